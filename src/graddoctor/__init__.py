"""graddoctor: find and fix vanishing and exploding gradients in PyTorch models.

The public names:

- ``check(model, example_inputs)``: a ``Report`` on the untrained model (static rules and
  an init probe);
- ``watch(model, optimizer, log_dir)``: a ``Watcher`` that records gradient flow during
  training; ``Watcher.report()`` gives a ``Report``;
- ``repair(model, report)``: a ``RepairResult`` (the repaired model and its changes);
- ``Report``, ``Finding``: what ``check`` and ``watch`` return;
- ``ModelMap``: the layers and activations of a model in execution order;
- ``GraddoctorError``: the base of graddoctor's errors;
- subpackages ``zoo``, ``data``, ``lab``, and the module aliases ``plots``
  (``graddoctor.present.plots``), ``rules`` (``graddoctor.diagnose.training``) and
  ``remedies`` (``graddoctor.fix.remedies``), imported on first use.

Example:
    >>> import graddoctor as gd
    >>> gd.__version__ >= "0.1", gd.rules.__name__, gd.Report().ok
    (True, 'graddoctor.diagnose.training', True)
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

from graddoctor.diagnose.checkup import check  # noqa: E402
from graddoctor.diagnose.watching import Watcher, watch  # noqa: E402
from graddoctor.fix.repairing import RepairResult, repair  # noqa: E402

# public name -> module that defines it (imported on first use); None: the subpackage of that name
_LAZY = {
    "ModelMap": "graddoctor.modelmap",
    "Report": "graddoctor.report",
    "Finding": "graddoctor.report",
    "GraddoctorError": "graddoctor.errors",
    "lr_find": "graddoctor.lrfind",
    "LRFindResult": "graddoctor.lrfind",
    "zoo": None,
    "data": None,
    "lab": None,
    # module aliases kept from the flat layout (public since 0.1)
    "plots": "graddoctor.present.plots",
    "remedies": "graddoctor.fix.remedies",
    "rules": "graddoctor.diagnose.training",
}
_MODULE_ALIASES = {"plots", "remedies", "rules"}

__all__ = ["__version__", "check", "watch", "Watcher", "repair", "RepairResult", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'graddoctor' has no attribute {name!r}")
    target = _LAZY[name]
    if target is None:
        value = import_module(f"graddoctor.{name}")
    elif name in _MODULE_ALIASES:
        value = import_module(target)
    else:
        value = getattr(import_module(target), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
