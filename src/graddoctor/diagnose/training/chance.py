"""``loss-plateau`` at chance: a loss that ends the run at the uniform guess, ln K.

The plateau rule (``loss.loss_plateau``) judges the first ``loss.EARLY_STEPS`` against their start.
A loss that starts above ln K (an over-confident init, or the noise of heavy dropout) and falls to
ln K looks like progress there, yet a loss at ln K is what predicting 1/K for every class scores: a
3-layer MLP with dropout 0.9 on MNIST-1D went 2.70 -> 2.30 (ln 10 = 2.303) in 200 steps, sat there
to step 400 and scored chance on held-out data (0.098 against 0.575 at dropout 0.1), and watch said
nothing. Here the last ``SPAN`` losses of a run of at least ``MIN_LOSSES``, each of their
``BLOCKS`` block medians, sit within ``TOL`` of ln K (K = the output width, at least 3; a
class-imbalanced task settles lower, at its prior's entropy), and the run started as a
classifier does, at most ``START_MAX`` x ln K (a 3-output MSE regression fell from 10 to its
noise floor, 1.10, next to ln 3 = 1.099). A warning, by the policy: the
gradients name no cause, so the data, the labels, the learning rate (and heavy dropout, when the
model has it: the meta's ``config.dropout``) are named.

Example:
    >>> meta = {"config": {"output_width": 10}}
    >>> steps = [{"step": t, "loss": max(2.7 - t / 500, 2.3026)} for t in range(1, 401)]
    >>> [(f.code, f.evidence["path"]) for f in plateau_or_chance(meta, steps)]
    [('loss-plateau', 'at chance')]
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.training.loss import REF, loss_plateau
from graddoctor.diagnose.training.progress import finite_losses
from graddoctor.diagnose.training.series import as_float
from graddoctor.report import Finding

MIN_LOSSES = 200  # finite losses in the run
SPAN = 100  # the last losses read
BLOCKS = 4  # ... in this many blocks, each block's median at chance
TOL = 0.01  # relative distance to ln K (a weak-signal 3-class task's best loss is 2.2% below ln 3)
START_MAX = 2.0  # the run's first losses at most this x ln K: a classifier's (an MSE from 10 is not)
MIN_CLASSES = 3


def plateau_or_chance(meta: dict, steps: list[dict]) -> list[Finding]:
    """``loss.loss_plateau``'s finding, else the run's end at chance (``at_chance``)."""
    return loss_plateau(meta, steps) or at_chance(meta, steps)


def at_chance(meta: dict, steps: list[dict]) -> list[Finding]:
    """``[Finding]`` when the run ends with its loss at ln K (see the module docstring), else ``[]``."""
    cfg = meta.get("config") or {}
    classes = cfg.get("output_width")
    loss = finite_losses(steps, early=10 ** 12)
    if not isinstance(classes, int) or classes < MIN_CLASSES or len(loss) < MIN_LOSSES:
        return []
    chance = math.log(classes)
    blocks = [float(np.median(b)) for b in np.array_split(loss[-SPAN:], BLOCKS)]
    if any(abs(b - chance) > TOL * chance for b in blocks) or float(np.median(loss[:5])) > START_MAX * chance:
        return []
    used = [s for s in steps if math.isfinite(as_float(s.get("loss")))]  # (a loss of 0.0 is finite)
    first = int(used[-SPAN].get("step", 0)) if len(used) >= SPAN else None
    level = float(np.median(loss[-SPAN:]))
    dropout = cfg.get("dropout")
    heavy = (f"; the model drops {dropout:.0%} of its units at every step (dropout p={dropout:g}): a net that keeps "
             "so few cannot fit - lower it") if dropout else ""
    msg = (f"the loss ended the run at chance: {level:.4g} over the last {SPAN} steps against ln {classes} = "
           f"{chance:.4g}, the loss of predicting 1/{classes} for every class{heavy}")
    ev = {"loss_level": round(level, 4), "chance": round(chance, 4), "classes": classes, "path": "at chance",
          "gradient_evidence": None, "loss_start": round(float(np.median(loss[:5])), 4), **({"dropout": dropout} if dropout else {})}
    return [Finding("loss-plateau", "warning", msg, [], ev, ["lr-find"], first, REF)]


__all__ = ["at_chance", "plateau_or_chance"]
