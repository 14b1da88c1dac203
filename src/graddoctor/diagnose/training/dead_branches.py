"""The dead-branch path of ``vanishing-gradient``: weight layers that get exactly zero gradient
step after step while the rest of the net gets one.

A residual net whose branches are cut (a norm gain zeroed by a bad checkpoint load, a gated MLP
fed zeros: ``silu(0) * 0`` is a stationary point) still learns through its skips, so the
input and output sides of the profile both have live layers and the side-to-side drop says
nothing; the cut layers' gradients are exact zeros (``10^LOG_FLOOR`` in the profile). This path names them. Exactly zero, not small:
layers the forward does not use have no gradient (``None``: never recorded) unless the loop
zeroes gradients in place (``zero_grad(set_to_none=False)``), which the message says.

Measured: a 2-layer Llama with every RMSNorm gain zeroed: both SwiGLU MLPs (6 of 11 profile
layers) got exactly zero gradient for all 200 steps and ended at loss 2.44 against 0.66 for the
stock twin; watch called it ``exploding-gradient`` (the zeros read as 24 orders of growth).

Example:
    >>> meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(6)]}
    >>> g = [0.1, 0.0, 0.0, 0.1, 0.0, 0.0]
    >>> steps = [{"step": t, "grad_norm": {str(i): g[i] for i in range(6)}} for t in range(1, 23)]
    >>> [f.code for f in dead_branches(meta, steps)]
    ['vanishing-gradient']
"""

from __future__ import annotations

import numpy as np

from graddoctor.diagnose.thresholds import MIN_LAYERS, REF_VANISH
from graddoctor.diagnose.training.series import (
    DEAD_ROWS,
    first_persistent,
    matrix,
    profile_layers,
    used_steps,
)
from graddoctor.report import Finding

#: recorded steps in a row the same layers must get exactly zero gradient: stochastic depth at a
#: drop rate of 0.8 (masked, not skipped: zeros, not None) left 6 of 18 layers out 10 steps in a
#: row; 0.5 and under did not (0.8^20 is ~1% per block, 0.5^20 ~1e-6)
DEAD_BRANCH_ROWS = 2 * DEAD_ROWS
#: at least this fraction of the profile's layers (and ``MIN_LAYERS``) dead at once: one or two
#: idle layers (a head the loss does not reach yet) are not a cut through the net
DEAD_FRACTION = 1 / 3
#: a norm gain whose weight norm is under this is zeroed (the cut's likely cause)
ZERO_GAIN = 1e-6


def dead_branches(meta: dict, steps: list[dict]) -> list[Finding]:
    """``vanishing-gradient`` (warning) when ``DEAD_BRANCH_ROWS`` recorded steps in a row have at least
    ``MIN_LAYERS`` profile layers, and ``DEAD_FRACTION`` of those with a gradient, at exactly
    zero gradient while some layer gets one; the layers dead in all of those steps are named.
    Zeroed norm gains make ``norm-gain`` the remedy (else none is named)."""
    names = profile_layers(meta)
    st = [s for s in used_steps(steps) if s.get("grad_norm")]
    if len(st) < DEAD_BRANCH_ROWS or len(names) < MIN_LAYERS:
        return []
    g = matrix(st, "grad_norm", names)
    fin = np.isfinite(g)
    zero = fin & (g == 0)
    count, alive = zero.sum(axis=1), fin.sum(axis=1) - zero.sum(axis=1)
    flags = ((count >= MIN_LAYERS) & (count >= DEAD_FRACTION * fin.sum(axis=1)) & (alive > 0)).tolist()
    j = first_persistent(flags, DEAD_BRANCH_ROWS)
    if j is None:
        return []
    ids = [int(s.get("step", i)) for i, s in enumerate(st)]
    rows = zero[j:j + DEAD_BRANCH_ROWS]
    dead = [n for k, n in enumerate(names) if rows[:, k].all()]
    if len(dead) < MIN_LAYERS:
        return []
    gains = _zeroed_gains(meta, steps)
    remedies = ["norm-gain"] if gains else []  # an unused or saturated branch: no re-draw helps
    shown = ", ".join(dead[:4]) + (f" and {len(dead) - 4} more" if len(dead) > 4 else "")
    cause = (f"{len(gains)} norm gain(s) at zero ({', '.join(gains[:3])})" if gains else
             "a zeroed norm gain or weight, activations saturated flat, or layers the forward does "
             "not use whose gradients the loop zeroes in place (zero_grad(set_to_none=False))")
    msg = (f"{len(dead)} of {int(fin[j].sum())} layers get exactly zero gradient from step {ids[j]} on "
           f"({shown}) while the rest of the net learns: a dead branch - {cause}")
    ev = {"dead_layers": dead, "zero_gradient_layers": len(dead), "profile_layers": list(names),
          "dead_from_step": ids[j], "rows": DEAD_BRANCH_ROWS, "zeroed_norm_gains": gains}
    return [Finding("vanishing-gradient", "warning", msg, dead, ev, remedies, ids[j], REF_VANISH)]


def _zeroed_gains(meta: dict, steps: list[dict]) -> list[str]:
    """Trainable norm layers whose last recorded weight norm is under ``ZERO_GAIN``."""
    norms = [ly["name"] for ly in meta.get("layers", []) if ly.get("kind") == "norm" and ly.get("trainable", True)]
    st = [s for s in used_steps(steps) if s.get("weight_norm")]
    if not norms or not st:
        return []
    w = matrix(st[-1:], "weight_norm", norms)[0]
    return [n for n, v in zip(norms, w) if np.isfinite(v) and v < ZERO_GAIN]


__all__ = ["DEAD_BRANCH_ROWS", "DEAD_FRACTION", "ZERO_GAIN", "dead_branches"]
