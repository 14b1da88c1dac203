"""poor-init at training time: weights drawn off scale (the init audit watch ran at its first
forward: check's ``poor-init``, kept in the meta's ``config.init_audit``) and a loss still above a
uniform guess over the model's outputs (ln of the output width) after ``JUDGE_FROM`` steps.

Every other rule reads progress against the run's own first loss, so an init that starts the
loss at 2-4x ln(K) looks like learning while the model stays worse than a constant predictor.
Measured (2-layer Hugging Face models, vocabulary 128, ln V = 4.85, AdamW 1e-3, 200 steps, plain
watch): GPT-2, OPT, BERT and BART at ``initializer_range`` 0.5 and 1.0, BERT at 0.2 and Llama at
1.0 ended at 4.9-10 (started at 6-22) with no finding; the stock models end at 0.7-2.0 (BERT,
slow: 4.84, below ln V) and nothing in them is off scale. All three conditions are needed: a
loss above ln(K) alone is a regression loss, a summed loss or an auxiliary term as often as a
fault; a model the audit reads as off scale may still learn (GPT-2 at 0.2: 6.3 -> 3.1); and only
weights drawn LARGE (the median Linear ``std * sqrt(fan_in)``, ``weight_scale``, at least
``SCALE_FLOOR`` = 1.5: logits off scale push a cross-entropy above ln K) tie the loss level to the
init. PyTorch's default init (0.58) reads off scale for a deep ReLU MLP, too small: a VAE
(BCE-sum + KL, 5788 -> 3352) and MSE regressions of 4-10 default-init layers (2780 -> 310) were
called ``poor-init`` errors before this point, while their He-init twins learnt no better.

Example:
    >>> meta = {"config": {"output_width": 10, "weight_scale": 8.0, "init_audit": [{"code": "poor-init", "message": "8 layers",
    ...         "layers": ["0"], "remedies": ["he-init"]}]}}
    >>> steps = [{"step": t, "loss": 40.0 - 0.1 * t} for t in range(1, 121)]
    >>> [(f.code, f.severity, f.remedies) for f in init_loss(meta, steps)]
    [('poor-init', 'error', ['he-init'])]
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.checktime.attention import SCALE_FLOOR
from graddoctor.diagnose.training.progress import finite_losses
from graddoctor.report import Finding

#: losses recorded before the level is judged
JUDGE_FROM = 100
#: losses in the level (their median)
LEVEL = 20

REF = "Glorot & Bengio 2010 (AISTATS, sec. 4); He et al. 2015 (ICCV, sec. 2.2)"


def init_loss(meta: dict, steps: list[dict]) -> list[Finding]:
    """``poor-init`` (error) when the meta's init audit found the weights off scale and drawn large
    (``weight_scale`` >= ``SCALE_FLOOR``), the output width K >= 2, at least ``JUDGE_FROM`` losses are recorded, and both the first loss and the
    level (median of the last ``LEVEL``) are at or above ln(K)."""
    cfg = meta.get("config") or {}
    audit, width, scale = cfg.get("init_audit") or [], cfg.get("output_width") or 0, cfg.get("weight_scale")
    if not audit or not isinstance(width, int) or width < 2 or not (isinstance(scale, (int, float)) and scale >= SCALE_FLOOR):
        return []
    loss = finite_losses(steps, early=10 ** 12)
    guess = math.log(width)
    if len(loss) < JUDGE_FROM:
        return []
    first, level = float(loss[0]), float(np.median(loss[-LEVEL:]))
    if first < guess or level < guess:
        return []
    last = max(int(s.get("step", 0)) for s in steps)
    layers = sorted({n for a in audit for n in a.get("layers") or []})
    remedies = list(dict.fromkeys(r for a in audit for r in a.get("remedies") or []))
    said = "; ".join(str(a.get("message", "")) for a in audit)
    msg = (f"after {len(loss)} steps the loss ({level:.4g}) is still above a uniform guess over the "
           f"{width} outputs (ln {width} = {guess:.3g}); it started at {first:.4g} ({first / guess:.1f}x): the "
           f"weights were drawn off scale at the start of the run - {said}")
    ev = {"loss_first": round(first, 4), "loss_level": round(level, 4), "uniform_guess": round(guess, 4),
          "output_width": width, "weight_scale": scale, "init_audit": audit}
    return [Finding("poor-init", "error", msg, layers, ev, remedies, last, REF)]


__all__ = ["JUDGE_FROM", "LEVEL", "init_loss"]
