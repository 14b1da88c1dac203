"""``softmax-before-loss`` at check time: a probability output fed to a loss that takes logits or
log-probabilities.

The probe (``measure.probe_loss.probabilities_into``) sees the output the loss reads: non-negative
and summing to 1 over the class axis (a softmax at the model's end). ``nn.CrossEntropyLoss`` applies
its own log-softmax to logits, so on probabilities the loss is bounded below by ln(e + C - 1) - 1
(1.46 for 10 classes) and every gradient passes a second softmax's Jacobian: an MLP on MNIST-1D
trained this way ended at 0.388 test accuracy against 0.582 without the softmax, and watch saw no
gradient fault. ``nn.NLLLoss`` takes log-probabilities: on probabilities it minimises -p, not
-log p. An error when the user's ``loss_fn`` is one of them; a warning when it is the probe's own
default cross-entropy (an integer target and no ``loss_fn``: the training loss is not known).

Example:
    >>> from graddoctor.measure.probe import ProbeResult
    >>> p = ProbeResult(probabilities_into={"loss": "cross-entropy", "classes": 10}, loss_source="loss_fn")
    >>> f = softmax_before_loss(p, ["out"])
    >>> f.code, f.severity, f.evidence["loss_floor"]
    ('softmax-before-loss', 'error', 1.4612)
"""

from __future__ import annotations

import math

from graddoctor.measure.probe import ProbeResult
from graddoctor.report import Finding

REF = ("PyTorch docs, torch.nn.CrossEntropyLoss (its input is the unnormalized logits) and "
       "torch.nn.NLLLoss (its input holds log-probabilities)")


def softmax_before_loss(p: ProbeResult, softmax_modules: list[str]) -> Finding | None:
    """The finding when the probe's loss fed a probability output to a log-space loss, else None.

    Args:
        p: the probe's result.
        softmax_modules: names of the model's ``nn.Softmax`` modules (the last one is named).
    """
    if p.probabilities_into is None:
        return None
    kind, classes = p.probabilities_into["loss"], p.probabilities_into["classes"]
    given = p.loss_source == "loss_fn"
    where = f" ({', '.join(repr(n) for n in softmax_modules[-1:])})" if softmax_modules else ""
    if kind == "nll":
        msg = (f"the model outputs probabilities (non-negative, each row summing to 1: a softmax at its end{where}) "
               "and the loss is NLLLoss, which takes log-probabilities: it then minimises -p, not -log p - use "
               "nn.LogSoftmax (or return logits and use CrossEntropyLoss)")
        return Finding("softmax-before-loss", "error", msg, softmax_modules[-1:], {"loss": "nll"}, [], 0, REF)
    floor = round(math.log(math.e + classes - 1) - 1, 4)
    bound = f": the loss cannot go below ln(e + C - 1) - 1 = {floor:.3g} for C = {classes},"
    msg = (f"the model outputs probabilities (non-negative, each row summing to 1: a softmax at its end{where}) "
           f"and the loss is cross-entropy, which applies its own log-softmax{bound} and every gradient passes "
           "a second softmax's Jacobian - drop the final softmax and return logits")
    if not given:
        msg = (f"{msg} (the probe used cross-entropy for the integer target; if you train with "
               "NLLLoss on log-probabilities, pass loss_fn= and this goes away)")
    return Finding("softmax-before-loss", "error" if given else "warning", msg, softmax_modules[-1:],
                   {"loss": "cross-entropy", "loss_floor": floor, "classes": classes, "loss_given": given}, [], 0, REF)


__all__ = ["REF", "softmax_before_loss"]
