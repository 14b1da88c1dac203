"""clip-too-tight: gradient clipping that cuts nearly every step to a tiny norm.

Watch reads the gradients where they are final, after the user's ``clip_grad_norm_`` (the
Lightning and HF callbacks read them before the trainer's clip and put its threshold in
``meta["config"]["max_grad_norm"]``: the norm the clip leaves is then ``min(norm, max_norm)``); a
norm clip leaves a signature: the global gradient norm is the clip's ``max_norm`` to float
precision on the steps it cuts (``clip_grad_norm_`` rescales by ``max_norm / (norm + 1e-6)``).
The rule calls it too tight when

- the global norm sits within ``PIN_TOL`` of one value on >= ``PIN_FRAC`` of the steps
  (at least ``MIN_STEPS`` steps): the clip cuts nearly every step; and
- that value is >= ``TIGHT_ORDERS`` orders of magnitude below the weights' global norm:
  a relative gradient ``||g|| / ||w||`` below 1e-3 on every step. Unclipped, a network at
  the start of training has ``||g|| / ||w||`` of about 1e-2..1 (measured on the scenario
  suite's healthy runs: median 0.03), so a clip there cuts the norm by orders of magnitude
  (Pascanu et al. 2013, sec. 3.2, pick the threshold near the average unclipped norm).

A clip at a sane value (1.0 on a net whose norm is ~5) is pinned too but sits
~1 order below the weights: no finding. Severity by the policy of ``thresholds``: error
when the loss has not moved, else warning; and info when the recorded steps did not shrink
(median update/weight ratio of the body >= ``STEP_FLOOR``): an adaptive optimizer (Adam)
divides the gradient by its own running scale, so the clip reweights the steps without
shrinking them. Measured on the realistic suite: the SGD runs clipped at 1e-4 step 1e-6..3e-6
of their weights, the Adam ones 0.004-0.015 (their loss within 1.3x of the unclipped twin's).

Example:
    >>> meta = {"layers": [{"name": "0", "kind": "linear"}]}
    >>> steps = [{"step": t, "loss": 2.3, "grad_norm": {"0": 1e-3}, "weight_norm": {"0": 8.0}}
    ...          for t in range(1, 61)]
    >>> [(f.code, f.severity) for f in clip_too_tight(meta, steps)]
    [('clip-too-tight', 'error')]
"""

from __future__ import annotations

import numpy as np

from graddoctor.diagnose.thresholds import HARM_SEVERITY
from graddoctor.diagnose.training.instability import median_update_ratios
from graddoctor.diagnose.training.loss import TINY_STEP
from graddoctor.diagnose.training.progress import loss_progress
from graddoctor.diagnose.training.series import matrix, used_steps
from graddoctor.report import Finding

#: relative spread around the pinned value (records keep 8 significant digits)
PIN_TOL = 1e-4
PIN_FRAC = 0.9
MIN_STEPS = 20
#: pinned norm at least this many orders below the weights' global norm
TIGHT_ORDERS = 3.0
#: a median update/weight ratio from which the steps did not shrink (the plateau rule's tiny step)
STEP_FLOOR = TINY_STEP
#: the max norm suggested instead (Pascanu et al. 2013: near the average unclipped norm; 1.0
#: is the common default, e.g. of transformers' Trainer)
SANE_MAX_NORM = 1.0

REF = "Pascanu, Mikolov & Bengio 2013 (ICML, sec. 3.2: the clipping threshold near the average norm)"


def clip_too_tight(meta: dict, steps: list[dict]) -> list[Finding]:
    """The global gradient norm pinned at one value >= ``TIGHT_ORDERS`` orders below the weights.

    Example:
        >>> clip_too_tight({"layers": []}, [])
        []
    """
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    st = [s for s in used_steps(steps) if s.get("grad_norm")]
    if len(st) < MIN_STEPS or not names:
        return []
    g, w = matrix(st, "grad_norm", names), matrix(st, "weight_norm", names)
    with np.errstate(invalid="ignore"):
        total = np.sqrt(np.nansum(g ** 2, axis=1))
        wtot = np.sqrt(np.nansum(w ** 2, axis=1))
    max_norm = float((meta.get("config") or {}).get("max_grad_norm") or 0.0)
    if max_norm > 0:  # read before a trainer's clip (Lightning, HF): the norm it leaves
        total = np.minimum(total, max_norm)
    ok = np.isfinite(total) & (total > 0)
    if ok.sum() < MIN_STEPS:
        return []
    pin = float(np.median(total[ok]))
    pinned = np.abs(total[ok] / pin - 1.0) <= PIN_TOL
    wnorm = float(np.nanmedian(wtot[ok & (wtot > 0)])) if np.any(ok & (wtot > 0)) else np.nan
    if pinned.mean() < PIN_FRAC or not np.isfinite(wnorm) or wnorm <= 0:
        return []
    orders = float(np.log10(wnorm / pin))
    if orders < TIGHT_ORDERS:
        return []
    prog = loss_progress(steps)
    _, ratios = median_update_ratios(meta, steps, body=True)
    ratios = ratios[np.isfinite(ratios)]
    step_size = float(np.median(ratios)) if len(ratios) else float("nan")
    kept = step_size >= STEP_FLOOR  # an adaptive optimizer rescaled the clipped gradient
    ev = {"pinned_norm": pin, "pinned_frac": round(float(pinned.mean()), 3),
          "weight_norm": round(wnorm, 4), "orders_below_weights": round(orders, 2),
          "threshold_orders": TIGHT_ORDERS, "suggested_max_norm": SANE_MAX_NORM,
          "loss_start": round(prog["start"], 4), "loss_level": round(prog["level"], 4),
          "loss_moved": not prog["stuck"], "median_update_ratio": step_size,
          "steps_shrunk": not kept}
    msg = (f"gradient clipping cuts {pinned.mean():.0%} of the steps to a global norm of {pin:.3g}, "
           f"{orders:.1f} orders of magnitude below the weights' norm {wnorm:.3g}: "
           + (f"the steps did not shrink (update/weight {step_size:.2g}: the optimizer rescales the "
              "gradient), so the clip only reweights them; a max_norm this small is likely a typo "
              if kept else "every step is shrunk to almost nothing ")
           + f"(use max_norm ~{SANE_MAX_NORM:g})" + ("; the loss has not moved" if prog["stuck"] else ""))
    first = int(st[int(np.argmax(ok))].get("step", 0))
    severity = "info" if kept and not prog["stuck"] else HARM_SEVERITY[prog["stuck"]]
    return [Finding("clip-too-tight", severity, msg, [], ev, ["clip-norm", "lr-find"], first, REF)]


__all__ = ["PIN_FRAC", "SANE_MAX_NORM", "STEP_FLOOR", "TIGHT_ORDERS", "clip_too_tight"]
