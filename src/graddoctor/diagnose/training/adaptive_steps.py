"""Adam's steps too large for the weights: the adaptive-optimizer path of ``exploding-gradient``.

An adaptive optimizer (Adam, AdamW, RMSprop, ...) moves every weight by about ``lr`` per step
whatever its gradient: its first step is exactly ``lr * sign(g)``, so the sampled update/weight
ratio of the first steps is ``lr / rms(w)``, the learning rate measured in units of the weights'
own scale. ``instability.oversized_updates`` does not read adaptive optimizers (their later
update ratios say nothing about stability: healthy Adam LSTMs at 1e-2 read 0.04-0.06); this
path reads only the first steps, and needs the loss to say the size hurts:

- **first steps far past the weights' scale**: the largest median update/weight ratio of the
  body over steps 1-4 (``postln.first_step_size``) >= ``FIRST_STEP_TOO_BIG`` (0.2: each step
  moves every weight by a fifth of its typical size; You et al. 2017, LARS, and Karpathy's
  CS231n notes put a healthy step near 1e-3 of the weights). Measured over both training suites
  (the autofix benchmark's runs, seeds 0-1, without their warm-ups): every healthy run reads at
  most 0.128 (an nn.TransformerEncoder d=64 at Adam 1e-2), the Adam faults at 30x their rate
  on an nn.TransformerEncoder 0.27-0.28. A Hugging Face model at its std 0.02 reads 0.05 at
  AdamW 1e-3 and 0.15 at 3e-3;
- **and a slow loss**: after at least ``progress.MIN_STEPS`` (40) steps its level is still
  above ``SLOW_FRAC`` (0.6) of its start, autofix's own "slow" line (``fix.autofix.judge``).
  An LSTM at Adam 3e-2 (first step 0.29) that learns fast, 0.45-0.49 of its start at step 40,
  and beats its twin at the usual rate, is left alone; the Transformers at 3e-2 sit at
  0.70-0.97.

The finding carries ``lr_divisor``: the rate is divided so that the first step would be
``TARGET_STEP`` (0.1) of the weights, inside the healthy runs' range.

Example:
    >>> meta = {"layers": [{"name": "a", "kind": "linear"}, {"name": "b", "kind": "linear"}],
    ...         "config": {"optimizer": "Adam"}}
    >>> steps = [{"step": t, "loss": 2.3, "update_ratio": {"a": 0.3, "b": 0.3}} for t in range(1, 41)]
    >>> f = adaptive_steps_too_big(meta, steps)
    >>> f.code, f.evidence["lr_divisor"]
    ('exploding-gradient', 3.0)
    >>> adaptive_steps_too_big({**meta, "config": {"optimizer": "SGD"}}, steps) is None
    True
"""

from __future__ import annotations

import math

from graddoctor.diagnose.training.instability import ADAPTIVE_OPTIMIZERS
from graddoctor.diagnose.training.postln import first_step_size
from graddoctor.diagnose.training.progress import loss_progress
from graddoctor.diagnose.training.series import used_steps
from graddoctor.report import Finding

#: the first steps' median update/weight ratio from which an adaptive optimizer's rate is too high
FIRST_STEP_TOO_BIG = 0.2
#: the loss level over its start above which the run has learnt little (autofix's ``SLOW_FRAC``)
SLOW_FRAC = 0.6
#: the first-step ratio the divided rate aims at
TARGET_STEP = 0.1

REF = ("Kingma & Ba 2015 (ICLR, Adam, sec. 2.1: the effective step is bounded by the step size); "
       "You, Gitman & Ginsburg 2017 (LARS, sec. 3: the ratio of the update to the weight norm)")


def adaptive_steps_too_big(meta: dict, steps: list[dict]) -> Finding | None:
    """An adaptive optimizer whose first steps move the weights by >= ``FIRST_STEP_TOO_BIG`` of
    their size, on a run whose loss is still above ``SLOW_FRAC`` of its start after 40 steps, or
    None (see the module docstring)."""
    opt = str((meta.get("config") or {}).get("optimizer") or "").lower()
    if not any(a in opt for a in ADAPTIVE_OPTIMIZERS):
        return None
    first = first_step_size(meta, steps)
    if not (math.isfinite(first) and first >= FIRST_STEP_TOO_BIG):
        return None
    prog = loss_progress(steps)
    if not (prog["judged"] and prog["ratio"] >= SLOW_FRAC):
        return None
    divisor = round(first / TARGET_STEP, 1)
    ev = {"first_update_ratio": round(first, 4), "threshold": FIRST_STEP_TOO_BIG,
          "loss_start": round(prog["start"], 4), "loss_level": round(prog["level"], 4),
          "level_over_start": round(prog["ratio"], 3), "slow_loss": True, "lr_divisor": divisor}
    msg = (f"the optimizer's first steps moved each weight by {first:.0%} of its size (median over the "
           f"layers; {opt or 'an adaptive optimizer'} steps every weight by ~lr whatever its gradient) "
           f"and the loss is still at {prog['ratio']:.0%} of its start: the learning rate is too high "
           f"for weights of this scale (divide it by ~{divisor:g})")
    return Finding("exploding-gradient", "error", msg, [], ev, ["lower-lr", "warmup"],
                   int(used_steps(steps)[-1].get("step", 0)), REF)


__all__ = ["FIRST_STEP_TOO_BIG", "SLOW_FRAC", "TARGET_STEP", "adaptive_steps_too_big"]
