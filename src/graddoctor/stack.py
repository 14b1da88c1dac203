"""The ``stacklevel`` that points a warning at the user's line (not at graddoctor, torch or a
training framework's frames between them).

Example:
    >>> user_level() >= 2
    True
"""

from __future__ import annotations

import os
import sys

import torch

_INSIDE = (os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.abspath(torch.__file__)))
#: training frameworks whose frames sit between the user's code and the optimizer step
_FRAMEWORKS = tuple(f"{os.sep}{name}{os.sep}" for name in ("lightning", "pytorch_lightning", "transformers",
                                                            "accelerate"))


def user_level() -> int:
    """The ``stacklevel`` (for a warning raised by the caller) of the first frame outside
    graddoctor, torch and the training frameworks: the user's ``opt.step()`` / ``gd.watch(...)`` line."""
    f, level = sys._getframe(2), 2
    while f is not None and (f.f_code.co_filename.startswith(_INSIDE)
                             or any(n in f.f_code.co_filename for n in _FRAMEWORKS)):
        f, level = f.f_back, level + 1
    return level


__all__ = ["user_level"]
