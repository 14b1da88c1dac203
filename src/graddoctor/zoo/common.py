"""Small helpers shared by the zoo factories: option checks, activations, norms, seeding."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.errors import InputError

#: activation name -> module class (modules, not functions: repair swaps them): ``kinds.SWAP_MODULES``
ACTIVATIONS: dict[str, type[nn.Module]] = dict(kinds.SWAP_MODULES)

NORMS = ("none", "batch", "layer", "group")


def choice(what: str, value: Any, options: Sequence[Any]) -> Any:
    """``value`` if it is one of ``options``, else a one-line InputError naming them."""
    if value not in options:
        raise InputError(f"{what}={value!r} is not supported; use one of {', '.join(map(repr, options))}")
    return value


def positive(what: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int >= minimum, else a one-line InputError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{what}={value!r} must be an integer >= {minimum}")
    return value


def activation(name: str) -> nn.Module:
    """A fresh activation module by name (``"relu"``, ``"tanh"``, ...)."""
    return ACTIVATIONS[choice("activation", name, tuple(ACTIVATIONS))]()


def norm_layer(kind: str, channels: int, dims: int = 0) -> nn.Module | None:
    """A normalisation layer over ``channels`` features, or None for ``"none"``.

    ``dims``: 0 for vectors (B, C), 1 for (B, C, L), 2 for (B, C, H, W).
    GroupNorm uses up to 8 groups (the largest count <= 8 dividing ``channels``).
    """
    choice("norm", kind, NORMS)
    if kind == "none":
        return None
    if kind == "batch":
        return (nn.BatchNorm1d, nn.BatchNorm1d, nn.BatchNorm2d)[dims](channels)
    if kind == "layer":
        return nn.LayerNorm(channels) if dims == 0 else nn.GroupNorm(1, channels)
    groups = max(g for g in range(1, 9) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with ``torch.manual_seed(seed)``, restoring the global CPU RNG after."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed={seed!r} must be an integer")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def n_params(model: nn.Module) -> int:
    """Number of trainable parameters (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
