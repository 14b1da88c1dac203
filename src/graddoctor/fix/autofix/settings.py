"""Autofix's arguments, checked when the watcher (or a framework callback) is made.

A bad value is one ``InputError`` line at ``gd.watch(...)`` / ``GradDoctorCallback(...)``, not
an internal error that turns autofix off at its first check (``check_every=0`` divided by zero
at step 1; ``warmup="40"`` failed a comparison at step 10; ``seed=None`` would fail at the
first fix, after the run had already gone wrong).

Example:
    >>> check_settings(True, warmup=40, check_every=10) is None
    True
    >>> check_settings(True, check_every=0)
    Traceback (most recent call last):
    graddoctor.errors.InputError: autofix: check_every must be an integer >= 1, got 0
"""

from __future__ import annotations

import numbers
from typing import Any

from graddoctor.errors import InputError
from graddoctor.fix.autofix.actions import check_allowed

#: autofix's integer arguments and their smallest valid value
SETTINGS = {"warmup": 0, "check_every": 1, "max_fixes": 0, "trial": 1, "seed": None}


def check_settings(autofix: Any, **settings: Any) -> tuple[str, ...] | None:
    """Validate ``autofix`` (``actions.check_allowed``) and the integer ``settings`` (names of
    ``SETTINGS``; ``seed`` any integer, the others at least their minimum).

    Returns:
        ``check_allowed(autofix)``: None (every in-place remedy) or the user's remedy ids.

    Raises:
        InputError: a bad ``autofix`` value, or a setting that is not an integer in range.
    """
    allowed = check_allowed(autofix)
    for name, value in settings.items():
        low = SETTINGS[name]
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        if not ok or (low is not None and value < low):
            what = "an integer" if low is None else f"an integer >= {low}"
            raise InputError(f"autofix: {name} must be {what}, got {value!r}")
    return allowed


__all__ = ["SETTINGS", "check_settings"]
