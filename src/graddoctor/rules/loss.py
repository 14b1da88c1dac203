"""The loss-plateau rule: the loss stops improving early in training.

At each step of the first ``EARLY_STEPS`` the last ``WINDOW`` losses get a
Theil-Sen slope (the median of pairwise slopes: mini-batch noise and spikes
cannot fake progress or its absence) and its standard error (from the median
absolute residual). The window is *flat* when the change it predicts over the
window is below ``max(MIN_REL_DROP, NOISE_SE x SE)`` either way (a loss that
swings back up is unstable, not stalled; a change within the noise is no
evidence of progress). A plateau is ``PERSIST`` consecutive flat windows while
the loss is still above ``PROGRESS_FRAC`` of its start (median of the first 5):
the net has learnt (almost) nothing - deep sigmoid stacks, dead or saturated
layers, a step far too small, a vanilla RNN that cannot reach the marked steps.

A healthy run improves by well over 3% per 30 steps early on; a slow start
(an LSTM's first 20-30 steps) is shorter than ``WINDOW + PERSIST``. Windows in
which the learning rate rises by over 10% (warm-up) are never flat: a flat loss there is
the schedule. Limitation, by design: a run that first drops below
``PROGRESS_FRAC`` of its start and then stalls is not flagged (it cannot be told
from convergence without knowing the attainable loss).

Example:
    >>> steps = [{"step": t, "loss": 2.3} for t in range(1, 61)]
    >>> [f.code for f in loss_plateau({"layers": []}, steps)]
    ['loss-plateau']
"""

from __future__ import annotations

import math

import numpy as np

from ..report import Finding
from ._series import as_float, first_persistent, used_steps

WINDOW = 30
MIN_REL_DROP = 0.03
NOISE_SE = 2.0
PERSIST = 12
PROGRESS_FRAC = 0.85
EARLY_STEPS = 100

REF = (
    "Saxe, McClelland & Ganguli 2014 (ICLR, sec. 2: plateaus of deep nets); "
    "Bengio, Simard & Frasconi 1994 (IEEE TNN 5(2), sec. IV: long-term dependencies)"
)


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else math.nan


def theil_sen(y: np.ndarray) -> tuple[float, float]:
    """(slope, standard error) of ``y`` against its index; robust to outliers.

    Example:
        >>> theil_sen(np.array([3.0, 2.0, 1.0, 0.0]))
        (-1.0, 0.0)
    """
    n = len(y)
    i, j = np.triu_indices(n, 1)
    slope = float(np.median((y[j] - y[i]) / (j - i)))
    x = np.arange(n)
    res = y - slope * x
    sigma = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    return slope, sigma / float(np.sqrt(((x - x.mean()) ** 2).sum()))


def plateau_flags(loss: np.ndarray, lr: np.ndarray | None = None) -> tuple[list[bool], float]:
    """Per step: is the window ending there flat, with the loss near its start? And the start.

    Example:
        >>> flags, start = plateau_flags(np.full(40, 2.0))
        >>> sum(flags), start
        (11, 2.0)
    """
    start = _median(loss[:5])
    flags = []
    for t in range(len(loss)):
        lo = t - WINDOW + 1
        if lo < 0:
            flags.append(False)
            continue
        y = loss[lo:t + 1]
        mid = _median(y)
        slope, se = theil_sen(y)
        change, noise = slope * WINDOW / mid, se * WINDOW / mid
        ramp = (lr is not None and math.isfinite(lr[lo]) and math.isfinite(lr[t])
                and lr[lo] < 0.9 * lr[t])
        level = _median(y[-10:])
        flat = abs(change) < max(MIN_REL_DROP, NOISE_SE * noise)
        flags.append(bool(flat and not ramp and level >= PROGRESS_FRAC * start))
    return flags, start


def loss_plateau(meta: dict, steps: list[dict]) -> list[Finding]:
    """The loss stuck near its start, or stalled after a drop, early in training.

    Example:
        >>> loss_plateau({"layers": []}, [{"step": t, "loss": 2.0 / t} for t in range(1, 80)])
        []
    """
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    st = [s for s in st if int(s.get("step", 0)) <= EARLY_STEPS]
    if len(st) < WINDOW:
        return []
    loss = np.array([as_float(s["loss"]) for s in st])
    lr = np.array([as_float(s.get("lr")) for s in st])
    flags, start = plateau_flags(loss, lr)
    i = first_persistent(flags, PERSIST)
    if i is None or len(flags) < PERSIST:
        return []
    j = i + PERSIST - 1  # the step where the plateau is established
    level = _median(loss[max(0, j - 9):j + 1])
    ev = {"loss_start": round(start, 4), "loss_level": round(level, 4),
          "level_over_start": round(level / start, 3) if start else None,
          "min_rel_change": MIN_REL_DROP, "window": WINDOW, "flat_windows": PERSIST,
          "progress_frac": PROGRESS_FRAC}
    msg = (f"the loss stopped improving: {level:.4g} at step {st[j].get('step')} vs {start:.4g} "
           f"at the start, flat for {PERSIST} windows of {WINDOW} steps")
    return [Finding("loss-plateau", "warning", msg, [], ev, ["lr-find", "batchnorm", "he-init"],
                    int(st[j].get("step", j)), REF)]
