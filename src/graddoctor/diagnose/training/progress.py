"""Has the loss moved? The harm side of the severity policy, from the loss records alone.

``loss_progress(steps)`` compares the loss level at the end of the first ``EARLY_STEPS``
(median of the last ``LEVEL_STEPS``) with its start (median of the first ``START_STEPS``).
A run whose level stays above ``STUCK_FRAC`` of its start after at least ``MIN_STEPS`` steps
has learnt nothing: the harm that turns a gradient-flow cause into an error.

Example:
    >>> loss_progress([{"step": t, "loss": 2.3} for t in range(1, 61)])["stuck"]
    True
    >>> loss_progress([{"step": t, "loss": 2.3 / t} for t in range(1, 61)])["stuck"]
    False
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.training.series import as_float, used_steps

#: steps read (a plateau later on is convergence or a schedule)
EARLY_STEPS = 100
START_STEPS = 5
LEVEL_STEPS = 10
#: fewest finite losses before "stuck" can be said
MIN_STEPS = 40
#: the level at or above this fraction of the start: nothing learnt
STUCK_FRAC = 0.9
#: a run whose final loss is below this fraction of its early level left its plateau later
LEFT_FRAC = 0.85


def finite_losses(steps: list[dict], early: int = EARLY_STEPS) -> np.ndarray:
    """The finite losses of the used steps numbered <= ``early``, in step order."""
    vals = [as_float(s.get("loss")) for s in used_steps(steps) if int(s.get("step", 0)) <= early]
    return np.array([v for v in vals if math.isfinite(v)], dtype=float)


def loss_progress(steps: list[dict]) -> dict:
    """``{"start", "level", "ratio", "stuck", "judged"}`` of the loss over the first ``EARLY_STEPS``
    (``judged``: enough losses to tell, ``MIN_STEPS``)."""
    loss = finite_losses(steps)
    if len(loss) < START_STEPS + LEVEL_STEPS:
        return {"start": math.nan, "level": math.nan, "ratio": math.nan, "stuck": False, "judged": False}
    start, level = float(np.median(loss[:START_STEPS])), float(np.median(loss[-LEVEL_STEPS:]))
    ratio = level / start if start > 0 else math.nan
    return {"start": start, "level": level, "ratio": ratio,
            "stuck": bool(len(loss) >= MIN_STEPS and math.isfinite(ratio) and ratio >= STUCK_FRAC),
            "judged": bool(len(loss) >= MIN_STEPS and math.isfinite(ratio))}


def flat_since(steps: list[dict], step: int) -> bool:
    """The loss has not moved since step ``step``: its level over the last ``LEVEL_STEPS`` losses is
    at or above ``STUCK_FRAC`` of its level over the first ``LEVEL_STEPS`` from that step (at least
    ``2 * LEVEL_STEPS`` finite losses from it; the whole run read, not the first ``EARLY_STEPS``).

    Example:
        >>> st = [{"step": t, "loss": 4.0 - t / 20 if t < 40 else 2.3} for t in range(1, 200)]
        >>> flat_since(st, 50), flat_since(st, 1)
        (True, False)
    """
    vals = [as_float(s.get("loss")) for s in used_steps(steps) if int(s.get("step", 0)) >= step]
    loss = np.array([v for v in vals if math.isfinite(v)], dtype=float)
    if len(loss) < 2 * LEVEL_STEPS:
        return False
    ref = float(np.median(loss[:LEVEL_STEPS]))
    return bool(ref > 0 and float(np.median(loss[-LEVEL_STEPS:])) >= STUCK_FRAC * ref)


def left_plateau(steps: list[dict]) -> float | None:
    """The loss at the end of the whole run (median of its last ``LEVEL_STEPS``) when it has
    fallen below ``LEFT_FRAC`` of its level at the end of the first ``EARLY_STEPS``: a run that
    sat on a plateau early and left it later (a slow start, not a run that cannot learn); None
    otherwise, or when the run is no longer than the early window.

    Example:
        >>> st = [{"step": t, "loss": 1.386 if t < 175 else 0.77} for t in range(1, 300)]
        >>> left_plateau(st), left_plateau(st[:150])
        (0.77, None)
    """
    early, whole = finite_losses(steps), finite_losses(steps, early=10 ** 12)
    if len(early) < LEVEL_STEPS or len(whole) < len(early) + LEVEL_STEPS:
        return None
    level, end = float(np.median(early[-LEVEL_STEPS:])), float(np.median(whole[-LEVEL_STEPS:]))
    return end if level > 0 and end < LEFT_FRAC * level else None


__all__ = ["EARLY_STEPS", "LEFT_FRAC", "MIN_STEPS", "STUCK_FRAC", "finite_losses", "flat_since", "left_plateau",
           "loss_progress"]
