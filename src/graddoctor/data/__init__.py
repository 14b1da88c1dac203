"""Embedded datasets: all offline, as train/test tensors in a :class:`Bundle`.

Names: ``digits`` (scikit-learn, real 8x8 handwriting), ``mnist1d`` (generated),
``adding``, ``temporal-order``, ``copy`` (synthetic sequence tasks, length ``T``),
``cifar10`` (only from a local ``data_dir``). Deterministic under ``seed``; nothing
is ever downloaded.

Example:
    >>> from graddoctor import data
    >>> b = data.load("digits", seed=0)
    >>> b.x_train.shape, b.y_train.dtype
    (torch.Size([1438, 64]), torch.int64)
    >>> data.names()
    ['adding', 'cifar10', 'copy', 'digits', 'mnist1d', 'temporal-order']
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from graddoctor.data.bundle import Bundle, stratified_split
from graddoctor.data.cifar10 import cifar10
from graddoctor.data.digits import digits
from graddoctor.data.mnist1d import mnist1d
from graddoctor.data.sequences import adding, copy_memory, temporal_order
from graddoctor.errors import InputError

#: name -> loader(seed=..., **options) -> Bundle
registry: dict[str, Callable[..., Bundle]] = {
    "digits": digits,
    "mnist1d": mnist1d,
    "adding": adding,
    "temporal-order": temporal_order,
    "copy": copy_memory,
    "cifar10": cifar10,
}


def names() -> list[str]:
    """The dataset names, sorted."""
    return sorted(registry)


def load(name: str, seed: int = 0, **kwargs: Any) -> Bundle:
    """Load dataset ``name`` as a :class:`Bundle`; options are passed to its loader.

    Unknown names/options raise a one-line ``InputError`` listing what exists.

    Example:
        >>> load("temporal-order", T=30, n_train=8, n_test=4).input_shape
        (30, 8)
    """
    if name not in registry:
        raise InputError(f"unknown dataset {name!r}; known datasets: {', '.join(names())}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed={seed!r} must be an integer")
    loader = registry[name]
    params = [p for p in inspect.signature(loader).parameters if p != "seed"]
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise InputError(f"dataset {name!r} has no option {unknown[0]!r}; options: {', '.join(params)}")
    return loader(seed=seed, **kwargs)


__all__ = ["Bundle", "adding", "cifar10", "copy_memory", "digits", "load", "mnist1d", "names",
           "registry", "stratified_split", "temporal_order"]
