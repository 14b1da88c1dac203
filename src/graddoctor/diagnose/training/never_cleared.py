"""Gradients never cleared between optimizer steps: ``optimizer.zero_grad()`` missing.

Without ``zero_grad()`` each backward adds to the last step's ``.grad`` tensors, so every step
applies the sum of all gradients so far: the norm grows step after step and the run blows up or
stalls. A held-out trial's runs were reported as ``exploding-gradient`` ("the learning rate is far
too high", clip-norm first: a CNN with SGD at a sound rate, loss 29 at the end) and a plateau
with batchnorm and he-init. Watch records when a step's first ``.grad`` is the very tensor of the
step before with exactly one in-place change since (``grad_kept``: the next backward's sum; after
``zero_grad()`` with its default ``set_to_none=True`` the next backward makes a new tensor, and
``set_to_none=False`` zeroes it in place, a second change; gradient accumulation over several
backwards, an AMP unscale or an in-place clip add changes too, so those loops are not read), and
the records must also show the total gradient norm growing (``GROWTH`` x from the first steps to
the last). Then the
``exploding-gradient`` and ``loss-plateau`` findings name the missing ``zero_grad()`` and drop
their remedies (a lower rate or a clip only slows the sum); with no ``exploding-gradient`` (Adam
rescales the sum: an MLP's gradient norm grew 70x in 120 steps with no finding), one is added, a
warning.

Example:
    >>> from graddoctor.report import Finding
    >>> steps = [{"step": t, "grad_kept": t > 1, "grad_norm": {"0": float(t)}} for t in range(1, 31)]
    >>> meta = {"layers": [{"name": "0"}]}
    >>> (f,) = name_never_cleared([Finding("exploding-gradient", "error", "grew", ["0"], {}, ["clip-norm"])], meta, steps)
    >>> f.remedies, f.evidence["grads_never_cleared"]
    ([], True)
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from graddoctor.diagnose.training.gradients import _global_norm
from graddoctor.report import Finding

REF = "PyTorch docs, torch.optim.Optimizer.zero_grad (gradients accumulate in .grad across backward calls)"

MIN_STEPS = 10  # steps with gradients read
KEPT_FRAC = 0.9  # of the steps after the first: the same .grad tensor as the step before
GROWTH = 3.0  # total gradient norm, median of the last 5 steps over the first 5

MESSAGE = ("the .grad tensors were never cleared between optimizer steps (the same tensors on {kept} of {steps} "
           "steps) and the total gradient norm grew {growth:.3g}x: each step applies the sum of every gradient so "
           "far - call optimizer.zero_grad() once per step (before backward)")


def never_cleared(meta: dict, steps: list[dict]) -> dict | None:
    """``{"kept", "steps", "growth", "first"}`` when the records show gradients summed over steps
    (``first``: the first step that reused the tensor), else None."""
    ids, total, _ = _global_norm(meta, steps)
    if len(ids) < MIN_STEPS:
        return None
    reused = {int(s.get("step", 0)) for s in steps if s.get("grad_kept")} & set(ids)
    kept = len(reused - {ids[0]})
    if kept < KEPT_FRAC * (len(ids) - 1):
        return None
    start, end = float(np.nanmedian(total[:5])), float(np.nanmedian(total[-5:]))
    growth = end / start if start > 0 else math.inf
    return {"kept": kept, "steps": len(ids), "growth": growth, "first": min(reused)} if growth >= GROWTH else None


def name_never_cleared(findings: list[Finding], meta: dict, steps: list[dict], add: bool = True) -> list[Finding]:
    """The findings with ``exploding-gradient`` and ``loss-plateau`` naming the missing
    ``zero_grad()`` when the records show it (see the module docstring), and (``add``) an
    ``exploding-gradient`` warning when there is none; unchanged otherwise."""
    seen = never_cleared(meta, steps)
    if seen is None:
        return findings
    ev = {"grads_never_cleared": True, "kept_steps": seen["kept"], "grad_growth": round(seen["growth"], 3)}
    msg = MESSAGE.format(**seen)
    if add and not any(f.code == "exploding-gradient" for f in findings):  # (Adam: the loss hid the growth)
        findings = [*findings, Finding("exploding-gradient", "warning", msg, [], dict(ev), [], seen["first"], REF)]
    return [replace(f, message=msg if f.code == "exploding-gradient" else f"{f.message}; {msg}",
                    evidence={**f.evidence, **ev}, remedies=[])
            if f.code in ("exploding-gradient", "loss-plateau") else f for f in findings]


__all__ = ["GROWTH", "KEPT_FRAC", "REF", "name_never_cleared", "never_cleared"]
