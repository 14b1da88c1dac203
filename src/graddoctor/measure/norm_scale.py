"""The effective gain of a normalisation layer: how much it scales a unit-variance signal.

A norm's output is its normalised input times its gain (plus a bias). The gain can be a plain
vector (torch's norms, Llama's RMSNorm) or ``1 + w`` (Gemma's RMSNorm, whose ``w`` starts at 0):
reading the weight alone cannot tell them apart. ``effective_gain`` calls the layer's own
``forward`` (no hooks run) in eval mode on two Gaussian inputs of its traced input shape and reads
the RMS of the difference of the outputs over sqrt(2): the bias cancels, and a unit-gain layer
gives 1 (its outputs have unit RMS and are independent). BatchNorm in eval mode uses its running
statistics, which at init (mean 0, variance 1) pass the Gaussian through unchanged.

Example:
    >>> import torch
    >>> from torch import nn
    >>> ln = nn.LayerNorm(64); _ = nn.init.constant_(ln.weight, 0.02)
    >>> round(effective_gain(ln, (8, 64)), 2), round(effective_gain(nn.LayerNorm(64), (8, 64)), 1)
    (0.02, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

#: the largest batch (first dimension) the probe inputs keep
PROBE_BATCH = 4


def effective_gain(module: nn.Module, input_shape: tuple[int, ...] | None, seed: int = 0) -> float | None:
    """RMS scale of ``module``'s output per unit of normalised input, or None when it cannot be
    called on Gaussian inputs of ``input_shape`` (no shape, an exotic signature, a failure).

    Args:
        module: a normalisation module.
        input_shape: its input's shape on the traced forward (``ModelMap`` ``Layer.input_shape``).
        seed: the probe inputs' seed.
    """
    def measure(draw: Callable[..., torch.Tensor]) -> float:
        with torch.no_grad():
            a, b = draw(), draw()
            d = (module.forward(a) - module.forward(b)).float()
        return float(d.pow(2).mean().sqrt()) / math.sqrt(2.0)

    return _on_gaussian(module, input_shape, seed, measure)


def input_sensitivity(module: nn.Module, input_shape: tuple[int, ...] | None, seed: int = 0) -> float | None:
    """How much of a unit-variance signal's variation ``module`` passes back: the median size of
    the vector-Jacobian product ``J^T v`` over that of ``v`` (``v`` Gaussian; the median, as the
    odd pair of near-equal values in a two-value group passes a huge one), at a Gaussian input
    of ``input_shape`` (batch capped at ``PROBE_BATCH``), in eval mode. A norm over n values per
    group passes about ``gain * sqrt((n - 2) / n)``: nothing for n <= 2 (one value normalises to
    0, two to +-1 whatever they are). None when it cannot be called on such an input.

    Example:
        >>> round(input_sensitivity(nn.GroupNorm(8, 8), (2, 8, 1, 1)), 3), input_sensitivity(nn.LayerNorm(64), (4, 64)) > 0.9
        (0.0, True)
    """
    def measure(draw: Callable[..., torch.Tensor]) -> float:
        x = draw().requires_grad_(True)
        with torch.enable_grad():
            y = module.forward(x)
            v = draw(y.shape).to(device=y.device, dtype=y.dtype)
            (u,) = torch.autograd.grad(y, x, v, allow_unused=True)
        return 0.0 if u is None else float(u.float().abs().median() / v.float().abs().median())

    return _on_gaussian(module, input_shape, seed, measure)


def _on_gaussian(module: nn.Module, input_shape: tuple[int, ...] | None, seed: int,
                 measure: Callable[[Callable[..., torch.Tensor]], float]) -> float | None:
    """``measure(draw)`` with ``module`` in eval mode, ``draw(shape=input_shape)`` giving seeded
    Gaussian tensors on the module's device and dtype (the batch capped at ``PROBE_BATCH``); None
    without a usable shape, on a failure or a non-finite result. The module's mode is restored."""
    if not input_shape or not all(isinstance(d, int) and d > 0 for d in input_shape):
        return None
    shape = (min(input_shape[0], PROBE_BATCH), *input_shape[1:]) if len(input_shape) > 1 else tuple(input_shape)
    w = getattr(module, "weight", None)
    dtype, device = (w.dtype, w.device) if isinstance(w, torch.Tensor) and w.is_floating_point() else (None, None)
    g = torch.Generator().manual_seed(seed)

    def draw(size: Any = shape) -> torch.Tensor:
        return torch.randn(tuple(size), generator=g).to(device=device, dtype=dtype)

    was = module.training
    try:
        module.eval()
        out = measure(draw)
        return out if math.isfinite(out) else None
    except Exception:  # noqa: BLE001 - a norm that needs more than one tensor: no measure
        return None
    finally:
        module.train(was)


def probe_shape(module: nn.Module) -> tuple[int, ...] | None:
    """An input shape ``module`` takes, from its own attributes (no traced forward needed):
    ``normalized_shape`` (LayerNorm, RMSNorm), the channels of a BatchNorm1d/2d/3d or GroupNorm,
    else the gain's length as the last axis (a hand-written RMSNorm); None without a gain.

    Example:
        >>> probe_shape(nn.LayerNorm(8)), probe_shape(nn.BatchNorm2d(3)), probe_shape(nn.GroupNorm(2, 4))
        ((4, 8), (4, 3, 2, 2), (4, 4, 2))
    """
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in shape):
        return (PROBE_BATCH, *shape)
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 1:
        return None
    c = w.shape[0]
    for kind, extra in ((nn.BatchNorm1d, ()), (nn.BatchNorm2d, (2, 2)), (nn.BatchNorm3d, (2, 2, 2)),
                        (nn.GroupNorm, (2,)), (nn.InstanceNorm2d, (2, 2))):
        if isinstance(module, kind):
            return (PROBE_BATCH, c, *extra)
    return (PROBE_BATCH, c)


__all__ = ["PROBE_BATCH", "effective_gain", "input_sensitivity", "probe_shape"]
