"""Autofix: repair during training, in place, and keep going (``gd.watch(..., autofix=True)``).

Files: ``watcher`` (``AutofixWatcher``: when to act, the event log), ``actions`` (trigger, plan,
in-place application, rollback), ``surgery`` (the optimizer rebound to the model's parameters;
when surgery is refused), ``settings`` (its arguments, checked when the watcher is made).
Importing this package registers ``AutofixWatcher`` with ``gd.watch``
(``graddoctor.diagnose.watching`` is a lower layer and cannot import it).

Example:
    >>> import graddoctor as gd
    >>> from graddoctor.diagnose import watching
    >>> watching.autofix_watcher() is AutofixWatcher
    True
"""

from graddoctor.diagnose import watching
from graddoctor.fix.autofix.actions import IN_PLACE, TRIGGERS
from graddoctor.fix.autofix.surgery import rebind_optimizer, refusal
from graddoctor.fix.autofix.watcher import AutofixWatcher

watching.register_autofix(AutofixWatcher)

__all__ = ["IN_PLACE", "TRIGGERS", "AutofixWatcher", "rebind_optimizer", "refusal"]
