"""Do the weights look trained? Autofix's init audit reads only freshly drawn weights.

A freshly drawn weight matrix (i.i.d. entries: PyTorch's default uniform, He, Xavier, any
normal) has its largest singular value at the edge of the Marchenko-Pastur bulk,
``std * (sqrt(m) + sqrt(n))``; an orthogonal one sits below it. Training grows a few
singular values far past that edge (Martin & Mahoney 2021, JMLR, "Implicit
self-regularization in deep neural networks", sec. 4). ``spectral_excess`` is the ratio of
the two. Measured on a 6-layer width-128 ReLU MLP (digits, Adam 1e-3): fresh 0.95-0.99;
after 30 steps 1.0-1.3, after 100 steps 1.1-1.7, after 300 steps 1.1-1.9; fresh matrices of
shapes 10x32 to 1000x10 under default, normal and orthogonal init: 0.5-1.0.

``looks_trained`` holds when the median excess over the weight matrices with at least
``MIN_SIDE`` rows and columns is >= ``TRAINED_EXCESS``: the model was loaded from a checkpoint
or trained before ``watch`` attached, so an init fault read from it is no init fault
(re-drawing a pretrained net under fine-tuning took it from 98% to 6% accuracy).

Example:
    >>> import torch
    >>> from torch import nn

from graddoctor.modelmap import layer_kind
    >>> _ = torch.manual_seed(0)
    >>> round(spectral_excess(nn.Linear(128, 128).weight), 1)
    1.0
    >>> looks_trained(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)))
    False
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from graddoctor.modelmap import layer_kind

#: fewest rows and columns for a matrix to be read (small ones fluctuate past the edge)
MIN_SIDE = 8
#: median excess at or above which the weights look trained
TRAINED_EXCESS = 1.2
#: power iterations per matrix (a few matrix-vector products: cheap at any size)
POWER_ITERS = 30
#: at most this many matrices are read (evenly spread over the model)
MAX_MATRICES = 64


def spectral_excess(weight: torch.Tensor, iters: int = POWER_ITERS) -> float:
    """Largest singular value (``iters`` power iterations: from below, so a fresh matrix, whose
    top values crowd at the edge, never reads high) over the bulk edge ``std * (sqrt(m) +
    sqrt(n))``; conv kernels flattened to ``[out, in * k]``; nan for a constant matrix."""
    w = weight.detach().float()
    w = w.flatten(1) if w.dim() > 2 else w
    m, n = w.shape
    std = float(w.std())
    if not std > 0:
        return float("nan")
    gen = torch.Generator(device=w.device).manual_seed(0)  # the user's RNG stream is not touched
    v = torch.randn(n, 1, generator=gen, device=w.device)
    for _ in range(iters):
        v = w.T @ (w @ v)
        v = v / v.norm().clamp_min(1e-30)
    return float((w @ v).norm()) / (std * (m ** 0.5 + n ** 0.5))


def looks_trained(model: nn.Module) -> bool:
    """The median ``spectral_excess`` of the model's Linear/Conv weights (Hugging Face ``Conv1D``
    too) >= ``TRAINED_EXCESS``."""
    weights = [w for mod in model.modules() if next(mod.parameters(recurse=False), None) is not None
               and layer_kind(mod) in ("linear", "conv")  # HF GPT-2's Conv1D too: its blocks
               and isinstance(w := getattr(mod, "weight", None), torch.Tensor) and w.dim() >= 2
               and min(w.shape[0], w[0].numel()) >= MIN_SIDE and not w.is_meta]
    picked = weights[:: max(1, len(weights) // MAX_MATRICES)]
    values = [e for e in map(spectral_excess, picked) if e == e]
    return bool(values) and statistics.median(values) >= TRAINED_EXCESS


__all__ = ["MIN_SIDE", "POWER_ITERS", "TRAINED_EXCESS", "looks_trained", "spectral_excess"]
