"""The ``lr-insensitive`` rule: the loss barely moves across the swept learning rates.

A trainable model's range-test loss falls somewhere in a sweep over several orders of
magnitude and then rises. When the smoothed loss never falls more than ``MIN_DROP`` below
its starting level over at least ``MIN_ORDERS`` decades (and ``MIN_POINTS`` steps), no
learning rate in the range trains the model, and a finder's suggestion means nothing. Two causes, told apart by the gradients watched during the sweep:

- the input side's gradients vanish (watch's ``vanishing-gradient`` fired): only the output
  layers learn, whatever the rate. Severity ``error``: two independent symptoms agree and
  no learning rate can cure it; the remedies are the gradient-flow ones of that finding.
- gradients reach the input side: the model can learn, so the data (inputs unscaled,
  labels shuffled or misaligned), the loss function, or frozen parameters are suspect, or
  the sweep is too short (a small net may need ~100 steps to show a descent), or the model
  is already trained. Severity ``warning``: one symptom, and a sweep that is too
  short or too noisy (tiny batches) can mimic it.

Example:
    >>> lrs = [10 ** (-5 + k / 10) for k in range(41)]
    >>> [f.severity for f in judge_curve(lrs, [2.3] * 41, [2.29] * 41, None)]
    ['warning']
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from graddoctor.report import Finding, Report

#: the smoothed loss must fall at least this fraction below its starting level somewhere:
#: a vanishing 20-layer sigmoid MLP on digits falls 0.1%, a default-init 3-layer MLP 5%, the
#: same sigmoid net repaired 14% (100 steps, 1e-7 to 10; batch 64, whose noise the smoothing
#: brings to about 0.5%)
MIN_DROP = 0.02
#: decades the sweep must cover (before it stopped) for the rule to speak
MIN_ORDERS = 3.0
#: fewest steps for the rule to speak (fewer per decade cannot show a descent)
MIN_POINTS = 40
#: the starting level: median of the first raw losses (this fraction of the sweep, at least 3)
START_FRAC = 0.1
REFERENCE = ("Smith 2017, 'Cyclical Learning Rates for Training Neural Networks' (WACV, sec. 3.3: "
             "the LR range test); Glorot & Bengio 2010 (AISTATS, sec. 4.2)")


def start_level(losses: Sequence[float]) -> float:
    """Median of the first raw losses: the level the sweep starts from.

    Example:
        >>> start_level([3.0, 1.0, 2.0, 0.0])
        2.0
    """
    k = max(3, int(len(losses) * START_FRAC))
    head = [v for v in losses[:k] if math.isfinite(v)]
    return statistics.median(head) if head else math.nan


def loss_drop(losses: Sequence[float], smoothed: Sequence[float]) -> float:
    """Largest fall of the smoothed loss below the starting level, as a fraction of it."""
    start = start_level(losses)
    best = min((v for v in smoothed if math.isfinite(v)), default=math.nan)
    if not (math.isfinite(start) and math.isfinite(best)) or start <= 0:
        return math.nan
    return (start - best) / start


def _side_grads(gradients: Report) -> dict[str, float]:
    """Median gradient norm of the first and the last watched layer over the sweep."""
    meta, steps = gradients.data.get("meta", {}), gradients.data.get("steps", [])
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    if len(names) < 2:
        return {}
    out = {}
    for side, name in (("input_side", names[0]), ("output_side", names[-1])):
        vals = [float(s["grad_norm"][name]) for s in steps
                if isinstance((s.get("grad_norm") or {}).get(name), (int, float))]
        if vals:
            out[f"{side}_layer"] = name
            out[f"{side}_grad_norm"] = float(f"{statistics.median(vals):.3g}")
    return out


def judge_curve(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                gradients: Report | None) -> list[Finding]:
    """``[Finding("lr-insensitive", ...)]`` when the loss barely moves over the sweep, else ``[]``."""
    if len(lrs) < MIN_POINTS:
        return []
    orders = math.log10(lrs[-1] / lrs[0]) if lrs[0] > 0 else 0.0
    drop = loss_drop(losses, smoothed)
    if orders < MIN_ORDERS or not math.isfinite(drop) or drop >= MIN_DROP:
        return []
    ev = {"orders_swept": round(orders, 2), "lr_range": [lrs[0], lrs[-1]],
          "loss_start": round(start_level(losses), 4), "loss_drop_frac": round(drop, 4),
          "min_drop_frac": MIN_DROP}
    vanishing = gradients.by_code("vanishing-gradient") if gradients is not None else []
    if gradients is not None:
        ev.update(_side_grads(gradients))
    span = f"{lrs[0]:.0e} to {lrs[-1]:.0e}"
    if vanishing:
        v = vanishing[0]
        ev.update(input_side_vanishing=True, drop_orders=v.evidence.get("drop_orders"),
                  input_side_log10=v.evidence.get("input_side_log10"))
        msg = (f"the loss moved {100 * drop:.1f}% over {orders:.0f} decades of learning rate "
               f"({span}) and the input side's gradients vanish ({v.evidence.get('drop_orders')} "
               "orders below the output side): no learning rate can train it, fix the gradient flow")
        return [Finding("lr-insensitive", "error", msg, list(v.layers), ev, list(v.remedies),
                        None, REFERENCE)]
    ev["input_side_vanishing"] = False if gradients is not None else None
    reach = ("gradients reach the input side, so" if gradients is not None
             else "gradients were not watched;")
    msg = (f"the loss moved {100 * drop:.1f}% over {orders:.0f} decades of learning rate ({span}); "
           f"{reach} the data, labels or loss are suspect (unscaled inputs, shuffled or misaligned "
           "labels, a wrong loss, frozen parameters), the sweep is too short to show a descent "
           "(raise num_steps), or the model is already trained")
    return [Finding("lr-insensitive", "warning", msg, [], ev, [], None, REFERENCE)]


__all__ = ["MIN_DROP", "MIN_ORDERS", "judge_curve", "loss_drop", "start_level"]
