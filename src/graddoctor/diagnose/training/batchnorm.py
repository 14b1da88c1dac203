"""batchnorm-eval-mode: BatchNorm layers left in eval mode while the model trains.

Watch reads each BatchNorm's ``training`` flag at every flush (``bn_eval`` in the step
records: the BatchNorm layers in eval mode). A BatchNorm in eval mode normalises with
running statistics that nobody updates (mean 0, variance 1 at init): the layer is a plain
affine map, and a deep net trains as if it had no normalisation (Ioffe & Szegedy 2015,
sec. 3.1). BatchNorms whose parameters are frozen (``trainable`` False in the meta), or whose
running statistics at attach were already the data's (``initial_stats`` False: trained or
loaded before watch), are a deliberate choice (fine-tuning with frozen statistics) and never
count.

Severity (``graddoctor.diagnose.thresholds`` policy): error when the loss has not moved
(``progress.loss_progress``), else warning.

Example:
    >>> meta = {"layers": [{"name": "bn", "kind": "norm", "type": "BatchNorm1d", "trainable": True}]}
    >>> steps = [{"step": t, "loss": 2.3, "bn_eval": ["bn"]} for t in range(1, 61)]
    >>> [(f.code, f.severity) for f in batchnorm_eval_mode(meta, steps)]
    [('batchnorm-eval-mode', 'error')]
"""

from __future__ import annotations

from graddoctor.diagnose.thresholds import HARM_SEVERITY
from graddoctor.diagnose.training.progress import loss_progress
from graddoctor.diagnose.training.series import used_steps
from graddoctor.report import Finding

#: fraction of the flushes at which a trainable BatchNorm must be in eval mode
EVAL_FRAC = 0.5

REF = "Ioffe & Szegedy 2015 (ICML, sec. 3.1: batch statistics in training, population statistics at inference)"


def batchnorm_eval_mode(meta: dict, steps: list[dict]) -> list[Finding]:
    """Trainable BatchNorm layers in eval mode at >= ``EVAL_FRAC`` of the flushes.

    Example:
        >>> batchnorm_eval_mode({"layers": []}, [])
        []
    """
    # a BatchNorm whose running statistics were already the data's at attach is a deliberate
    # freeze (a fine-tune's frozen BatchNorm): it normalises, with the statistics it was given
    trainable = {ly["name"] for ly in meta.get("layers", [])
                 if ly.get("trainable", True) and ly.get("initial_stats", True)}
    flushes = [s for s in used_steps(steps) if isinstance(s.get("bn_eval"), list)]
    if not flushes:
        return []
    counts: dict[str, int] = {}
    for s in flushes:
        for n in s["bn_eval"]:
            if n in trainable:
                counts[n] = counts.get(n, 0) + 1
    layers = [n for n, c in counts.items() if c >= EVAL_FRAC * len(flushes)]
    if not layers:
        return []
    first = next(int(s.get("step", 0)) for s in flushes if set(layers) & set(s["bn_eval"]))
    prog = loss_progress(steps)
    n_bn = len({n for s in flushes for n in s["bn_eval"]} | set(layers))
    ev = {"eval_layers": len(layers), "flushes": len(flushes),
          "eval_frac": round(min(counts[n] for n in layers) / len(flushes), 2),
          "loss_start": round(prog["start"], 4), "loss_level": round(prog["level"], 4),
          "loss_moved": not prog["stuck"]}
    msg = (f"{len(layers)} trainable BatchNorm layer(s) in eval mode while the model trains "
           f"(of {n_bn} in eval mode): they normalise with running statistics that never update, "
           "so the net trains unnormalised" + ("; the loss has not moved" if prog["stuck"] else ""))
    return [Finding("batchnorm-eval-mode", HARM_SEVERITY[prog["stuck"]], msg, layers, ev,
                    ["train-mode"], first, REF)]


__all__ = ["EVAL_FRAC", "batchnorm_eval_mode"]
