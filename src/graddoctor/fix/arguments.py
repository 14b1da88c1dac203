"""``gd.repair``'s argument checks: each bad argument is one ``InputError`` line, raised before any
work, that names the argument, what was given and the fix (not an ``AttributeError`` from deep
inside, nor a value silently ignored).

Example:
    >>> remedy_ids("relu, he-init")
    ['relu', 'he-init']
    >>> check_seed(-1)
    Traceback (most recent call last):
    graddoctor.errors.InputError: gd.repair: seed must be an int >= 0 or None, got int -1 - e.g. seed=0
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Mapping
from typing import Any

import torch

from graddoctor.errors import InputError
from graddoctor.fix import remedies as registry
from graddoctor.inputs import leaves
from graddoctor.lrfind import lr_find
from graddoctor.options import refuse

OWNER = "gd.repair"


def _given(value: Any) -> str:
    """``value`` for a message: a short repr for plain values, else its type."""
    if isinstance(value, (str, int, float)):
        return f"{type(value).__name__} {repr(value)[:60]}"
    return "None" if value is None else type(value).__name__


def remedy_ids(remedies: Any) -> list[str] | None:
    """``remedies`` as a list of known remedy ids (a string is one id, or ids separated by commas).

    Raises:
        InputError: not a string or a list of strings; no id; an unknown id.

    Example:
        >>> remedy_ids(("relu",)), remedy_ids(None)
        (['relu'], None)
    """
    if remedies is None:
        return None
    if isinstance(remedies, str):
        ids = [r.strip() for r in remedies.split(",") if r.strip()]
    elif isinstance(remedies, (list, tuple)) and all(isinstance(r, str) for r in remedies):
        ids = list(remedies)
    else:
        bad = next((r for r in remedies if not isinstance(r, str)), remedies) \
            if isinstance(remedies, (list, tuple)) else remedies
        got = _given(bad) if bad is remedies else f"a list holding {_given(bad)}"
        raise InputError(f"{OWNER}: remedies must be a list of remedy ids (or one id as a string), got {got} "
                         "- e.g. remedies=['relu', 'he-init']")
    if not ids and isinstance(remedies, str):  # (an empty list stays an empty plan: an LR-tune-only repair)
        raise InputError(f"{OWNER}: remedies={remedies!r} names no remedy - give ids like ['relu', 'he-init'], "
                         "or None to apply the planned ones")
    for rid in ids:
        try:
            registry.get(rid)
        except InputError as e:
            raise InputError(f"{OWNER}: remedies: {e}") from None
    return ids


def check_seed(seed: Any) -> None:
    """Raise unless ``seed`` is None or an int in [0, 2**64) (``torch.manual_seed``'s range)."""
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**64:
        raise InputError(f"{OWNER}: seed must be an int >= 0 or None, got {_given(seed)} - e.g. seed=0")


def check_flags(**flags: Any) -> None:
    """Raise unless each flag is a bool (``tune_lr`` may also be None)."""
    for name, value in flags.items():
        if not isinstance(value, bool) and not (name == "tune_lr" and value is None):
            also = " or None" if name == "tune_lr" else ""
            raise InputError(f"{OWNER}: {name} must be True or False{also}, got {_given(value)}")


def check_example_inputs(example_inputs: Any) -> None:
    """Raise unless ``example_inputs`` is None or holds a tensor (a tensor, a tuple or dict of them)."""
    if example_inputs is not None and not any(isinstance(x, torch.Tensor) for x in leaves(example_inputs)):
        raise InputError(f"{OWNER}: example_inputs must be a batch the model takes (a tensor, or a tuple or "
                         f"dict of tensors) or None, got {_given(example_inputs)} - e.g. "
                         "example_inputs=torch.randn(16, 64)")


def check_optimizer(optimizer: Any) -> None:
    """Raise unless ``optimizer`` is None or an optimizer (``param_groups``: a wrapper's too)."""
    if optimizer is not None and not isinstance(getattr(optimizer, "param_groups", None), list):
        raise InputError(f"{OWNER}: optimizer must be a torch.optim.Optimizer or None, got {_given(optimizer)} "
                         "- build one over the model's parameters, e.g. torch.optim.Adam(model.parameters())")


def check_lr_find(train_loader: Any, loss_fn: Any, lr_find_options: Any) -> None:
    """Raise unless ``train_loader`` is None or iterable batches, ``loss_fn`` None or callable, and
    ``lr_find_options`` None or a dict of ``gd.lr_find``'s keyword options."""
    if train_loader is not None and (isinstance(train_loader, (str, bytes)) or not hasattr(train_loader, "__iter__")):
        raise InputError(f"{OWNER}: train_loader must be batches (a DataLoader or a list of (x, y) batches), "
                         f"got {_given(train_loader)}")
    if loss_fn is not None and not callable(loss_fn):
        raise InputError(f"{OWNER}: loss_fn must be a callable (output, target) -> scalar loss or None, got "
                         f"{_given(loss_fn)} - e.g. loss_fn=torch.nn.functional.cross_entropy")
    if lr_find_options is None:
        return
    if not isinstance(lr_find_options, Mapping):
        raise InputError(f"{OWNER}: lr_find_options must be a dict of gd.lr_find options, got "
                         f"{_given(lr_find_options)} - e.g. lr_find_options={{'num_steps': 50}}")
    valid = {p.name for p in inspect.signature(lr_find).parameters.values() if p.kind is p.KEYWORD_ONLY}
    for name in lr_find_options:
        if name not in valid:
            refuse(f"{OWNER}: lr_find_options", str(name), valid, set())


def check_repair_args(example_inputs: Any, optimizer: Any, inplace: Any, seed: Any, keep_architecture: Any,
                      train_loader: Any, tune_lr: Any, loss_fn: Any, lr_find_options: Any) -> None:
    """Every check above, in ``gd.repair``'s argument order.

    Raises:
        InputError: the first bad argument (one line: the argument, what was given, the fix).

    Example:
        >>> check_repair_args(None, None, False, 0, False, None, None, None, {"num_steps": 50})
        >>> check_repair_args(None, "adam", False, 0, False, None, None, None, None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        graddoctor.errors.InputError: gd.repair: optimizer must be a torch.optim.Optimizer or None, got str 'adam' ...
    """
    check_example_inputs(example_inputs)
    check_optimizer(optimizer)
    check_flags(inplace=inplace, keep_architecture=keep_architecture, tune_lr=tune_lr)
    check_seed(seed)
    check_lr_find(train_loader, loss_fn, lr_find_options)


__all__ = ["check_repair_args", "remedy_ids"]
