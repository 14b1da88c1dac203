"""graddoctor: find and fix vanishing and exploding gradients in PyTorch models.

Example:
    >>> import graddoctor as gd
    >>> gd.__version__ >= "0.1"
    True
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# check, watch and repair are imported eagerly: a function named like its submodule must be bound after
# the submodule import, so that `import graddoctor.check` (module already in sys.modules) does not
# rebind `graddoctor.check` to the module. Everything else is imported on first use.
from .check import check  # noqa: E402
from .repair import RepairResult, repair  # noqa: E402
from .watch import Watcher, watch  # noqa: E402

# public name -> module that defines it (imported on first use)
_LAZY = {
    "ModelMap": "modelmap",
    "Report": "report",
    "Finding": "report",
    "GraddoctorError": "errors",
    "zoo": None,
    "data": None,
    "plots": None,
    "lab": None,
    "remedies": None,
    "rules": None,
}

__all__ = ["__version__", "check", "watch", "Watcher", "repair", "RepairResult", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'graddoctor' has no attribute {name!r}")
    module = import_module(f".{_LAZY[name] or name}", __name__)
    value = module if _LAZY[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
