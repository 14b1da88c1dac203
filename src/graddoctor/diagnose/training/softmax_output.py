"""``softmax-before-loss`` at training time: a model ending in ``nn.Softmax`` whose loss never
left the range of cross-entropy on probabilities.

Cross-entropy applies its own log-softmax, so fed probabilities p (each row summing to 1 over C
classes) it lies in [ln(e + C - 1) - 1, ln(e + C - 1)] whatever the model does: [1.46, 2.46] for
10 classes, where a loss on logits or log-probabilities starts near ln C and falls toward 0. A
double-softmax MLP on MNIST-1D (a held-out trial) sat at 1.79-2.30 for 400 steps and ended 19
points below its twin, with no gradient finding. The rule needs the model's last call to be an
``nn.Softmax`` (the meta's ``config.softmax_output``, from the first forward's map), the class
count (``config.output_width``, at least ``MIN_CLASSES``) and ``MIN_LOSSES`` finite losses, every
one inside that range. Info, not a warning: watch does not see the loss function, and a held-out
trial found healthy runs that read the same - ``NLLLoss`` on ``log(p)`` on a hard task (3 classes:
the range is [0.55, 1.55]), a distilled student on soft targets (its loss cannot go below the
teacher's entropy), a model returning ``(logits, softmax(logits))`` with the loss on the logits.
``gd.check`` with the loss function tells them apart (``checktime.softmax_loss``, from the loss's
value).

Example:
    >>> meta = {"config": {"softmax_output": "3", "output_width": 10}}
    >>> steps = [{"step": t, "loss": 2.3 - 0.4 * t / 300} for t in range(1, 301)]
    >>> [(f.code, f.severity) for f in softmax_loss_range(meta, steps)]
    [('softmax-before-loss', 'info')]
"""

from __future__ import annotations

import math

from graddoctor.diagnose.training.progress import finite_losses
from graddoctor.report import Finding

#: finite losses needed before a run that never left the range is judged
MIN_LOSSES = 200
#: classes needed: the floor is ln(e + C - 1) - 1, 0.31 for 2 classes (a hard binary task on
#: log-probabilities may never beat it; 1.46 for 10 takes a mean p(label) of only 0.23)
MIN_CLASSES = 3
TOL = 1e-3  # float32 losses at the bounds

REF = "PyTorch docs, torch.nn.CrossEntropyLoss (its input is the unnormalized logits)"


def softmax_loss_range(meta: dict, steps: list[dict]) -> list[Finding]:
    """``[Finding]`` when the loss of a model ending in ``nn.Softmax`` stayed in cross-entropy's
    range on probabilities for the whole run (see the module docstring), else ``[]``."""
    cfg = meta.get("config") or {}
    name, classes = cfg.get("softmax_output"), cfg.get("output_width")
    if not name or not isinstance(classes, int) or classes < MIN_CLASSES:
        return []
    loss = finite_losses(steps, early=10 ** 12)
    low, high = math.log(math.e + classes - 1) - 1, math.log(math.e + classes - 1)
    if len(loss) < MIN_LOSSES or float(loss.min()) < low - TOL or float(loss.max()) > high + TOL:
        return []
    msg = (f"the model ends in nn.Softmax ({name!r}) and its loss stayed within [{low:.3g}, {high:.3g}] for all "
           f"{len(loss)} steps (lowest {float(loss.min()):.4g}): the range of cross-entropy fed probabilities "
           f"for {classes} classes - if the loss is nn.CrossEntropyLoss, drop the Softmax (it takes logits); "
           "with NLLLoss, use nn.LogSoftmax (gd.check with your loss_fn tells)")
    return [Finding("softmax-before-loss", "info", msg, [name],
                    {"loss_floor": round(low, 4), "loss_ceiling": round(high, 4), "loss_min": round(float(loss.min()), 4),
                     "classes": classes, "losses": len(loss)}, [], None, REF)]


__all__ = ["MIN_CLASSES", "MIN_LOSSES", "softmax_loss_range"]
