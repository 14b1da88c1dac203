"""Rank collapse: how much a layer's outputs still differ from token to token.

A Transformer whose tokens all map to one vector has lost its input: attention averages
the same row everywhere and the output no longer depends on what came in (Dong et al.
2021, "Attention is not all you need: pure attention loses rank doubly exponentially with
depth"; Noci et al. 2022: rank collapse makes the gradients of the queries and keys vanish).
A post-LN stack thrown off by full-size first steps ends there (the autofix benchmark's stuck
post-LN faults), while a model on an early loss plateau (a masked LM predicting the unigram
distribution) still carries its tokens apart in its hidden layers.

``row_spread(x)`` is ``||X - mean_rows(X)|| / ||X||`` over the rows of ``x`` flattened to
``(rows, features)``: 0 when every row is the same vector, about 1 for rows drawn apart around
zero. ``token_spread(model, inputs, names)`` is its median over the named layers' outputs on one
forward (eval mode, no gradient, the RNG stream left as it was).

Example:
    >>> import torch
    >>> row_spread(torch.ones(4, 3)), round(row_spread(torch.eye(3)), 3)
    (0.0, 0.816)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.inputs import call_model

#: rows read per layer output (evenly strided beyond it): a long-context batch costs no more
MAX_ROWS = 4096


def row_spread(x: torch.Tensor) -> float:
    """``||X - mean_rows(X)||_F / ||X||_F`` with ``X`` = ``x`` as (rows, last dim), at most
    ``MAX_ROWS`` of them (evenly strided); nan for an all-zero or empty ``x`` or a single row
    (nothing to compare).

    Example:
        >>> row_spread(torch.tensor([[1.0, 2.0], [1.0, 2.0]]))
        0.0
    """
    if x.numel() == 0 or x.dim() == 0:
        return float("nan")
    rows = x.detach().reshape(-1, x.shape[-1])
    if len(rows) < 2:  # one row is no collapse
        return float("nan")
    rows = rows[::-(-len(rows) // MAX_ROWS)].float()  # evenly strided; float32: MPS has no float64
    total = rows.norm()
    if not torch.isfinite(total) or float(total) == 0.0:
        return float("nan")
    return float((rows - rows.mean(0)).norm() / total)


def token_spread(model: nn.Module, inputs: Any, names: list[str]) -> float | None:
    """The median ``row_spread`` of the outputs of the modules ``names`` (those the forward calls,
    with a floating-point tensor output of 2+ dimensions) on one forward of ``model`` on
    ``inputs``; None when none of them gave one.

    Raises:
        ModelCallError: the forward failed on ``inputs``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        >>> 0.5 < token_spread(net, torch.randn(16, 4), ["1"]) <= 1.0
        True
    """
    mods = dict(model.named_modules())
    spreads: list[float] = []

    def hook(module: nn.Module, args: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.dim() >= 2:
            spreads.append(row_spread(out))

    handles = [mods[n].register_forward_hook(hook) for n in names if n in mods]
    modes = [(m, m.training) for m in model.modules()]  # each module's own mode comes back
    try:
        model.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            call_model(model, inputs)
    finally:
        for m, training in modes:
            m.training = training
        for h in handles:
            h.remove()
    finite = sorted(s for s in spreads if s == s)
    return finite[len(finite) // 2] if finite else None
