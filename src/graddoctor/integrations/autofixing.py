"""Autofix inside the framework callbacks: ``GradDoctorCallback(autofix=True)``.

``HookedAutofixWatcher`` is the ``HookedWatcher`` (steps marked by the framework's "gradients
are final" hook) with ``AutofixWatcher``'s post-step repair: after the optimizer's step, between
two steps, it repairs the module and the optimizer in place, as ``gd.watch(..., autofix=True)``
does in a plain loop. The framework keeps training the same module and optimizer objects.

``framework_watcher`` builds one, or a plain ``HookedWatcher`` with one warning line when
autofix cannot run in this setup (``off``: e.g. several processes, whose ranks would each
repair on their own records and drift apart). ``check_options`` turns a misspelt callback
option, or a bad autofix setting, into one ``InputError`` line when the callback is made, not a
``TypeError`` or an internal error at fit start.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> w = framework_watcher(net, opt, None, autofix=True).attach()
    >>> type(w).__name__, w.fixes
    ('HookedAutofixWatcher', [])
    >>> w.detach()
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from graddoctor.errors import InputError
from graddoctor.fix.autofix.settings import SETTINGS, check_settings
from graddoctor.fix.autofix.watcher import AutofixWatcher
from graddoctor.fix.remedies.clip import clips_in_force
from graddoctor.integrations.stepping import HookedWatcher
from graddoctor.measure.monitor.output import sink_specs
from graddoctor.measure.monitor.schedule import Schedule
from graddoctor.options import keywords, refuse


class HookedAutofixWatcher(HookedWatcher, AutofixWatcher):
    """A ``HookedWatcher`` that also repairs in place (``AutofixWatcher``'s post-step hook).

    The clip in force (graddoctor's clip pre-hook on the optimizer) is also applied at
    ``before_optimizer_step``, after the step's record (which stays pre-clip): Lightning
    computes the gradients inside ``optimizer.step`` (its closure), after the optimizer's
    pre-hooks, so the clip's pre-hook would see last step's gradients. Clipping twice is a
    no-op the second time.
    """

    def start_at(self, done: int) -> None:
        """As ``Watcher.start_at``; the judged window and the warm-up also start there (a
        resumed run is judged on its own steps)."""
        fresh = self._step == 0
        super().start_at(done)
        if fresh:
            self._since = self._step

    def before_optimizer_step(self, optimizer: Any = None) -> None:
        super().before_optimizer_step(optimizer)
        if self.attached and self.optimizer is not None:
            for hook in list(clips_in_force(self.optimizer).values()):
                self._guarded(hook, self.optimizer, (), {}, always=True)


def framework_watcher(model: Any, optimizer: Any, log_dir: Any, *, autofix: Any = False,
                      off: str | None = None, **kwargs: Any) -> HookedWatcher:
    """The watcher a callback attaches: with autofix when asked for and ``off`` is None.

    Args:
        model, optimizer, log_dir, **kwargs: as ``HookedWatcher``.
        autofix: False, True or a list of remedy ids (as ``gd.watch``).
        off: why autofix cannot run here (one line, warned once), or None.
    """
    if autofix is False or autofix is None:
        return HookedWatcher(model, optimizer, log_dir, **kwargs)
    if off is not None:
        warnings.warn(f"graddoctor.autofix: off ({off}); watching without it", stacklevel=3)
        return HookedWatcher(model, optimizer, log_dir, **kwargs)
    return HookedAutofixWatcher(model, optimizer, log_dir, autofix=autofix, **kwargs)


#: watcher arguments the callbacks fill in from the trainer (never the user's)
_FROM_TRAINER = frozenset({"model", "optimizer", "optimizers", "extra_config"})


def check_options(owner: str, options: dict[str, Any], autofix: Any) -> None:
    """Refuse, in one line, a ``**watch_options`` entry the callback's watcher would not take.

    Args:
        owner: the callback, for the message (e.g. "GradDoctorCallback (Lightning)").
        options: the callback's ``**watch_options``.
        autofix: the callback's ``autofix`` (autofix options are valid only with it).

    Raises:
        InputError: an unknown option (the close valid ones named), a bad period
            (``flush_every="x"``) or sink, an autofix option without ``autofix=True`` or with a bad
            value (``check_every=0``), or an argument the trainer supplies.

    Example:
        >>> check_options("GradDoctorCallback", {"flushevery": 10}, False)
        Traceback (most recent call last):
        graddoctor.errors.InputError: GradDoctorCallback: unknown argument 'flushevery' (did you mean 'flush_every'?)
    """
    fixing = autofix is not False and autofix is not None
    every = keywords(HookedAutofixWatcher) - _FROM_TRAINER - {"log_dir", "autofix"}
    valid = every if fixing else keywords(HookedWatcher) - _FROM_TRAINER - {"log_dir"}
    for name in options:
        if name in _FROM_TRAINER:
            raise InputError(f"{owner}: {name!r} comes from the trainer - drop it")
        if name not in valid:
            refuse(owner, name, valid | {"log_dir", "autofix"}, every - valid)
    periods = {k: v for k, v in options.items() if k in {f.name for f in dataclasses.fields(Schedule)}}
    try:  # a bad value now, not at fit start deep inside the trainer
        Schedule(**periods)
        if "sinks" in options:
            sink_specs(options["sinks"])
        if fixing:
            check_settings(autofix, **{k: v for k, v in options.items() if k in SETTINGS})
    except InputError as e:
        raise InputError(f"{owner}: {e}") from None

__all__ = ["HookedAutofixWatcher", "check_options", "framework_watcher"]
