"""degenerate-norm: a normalisation layer that normalises one or two values per group at the
model's input shape, so its output does not depend on its input.

A norm subtracts its group's mean and divides by its spread. One value per group normalises to
0 (the output is the layer's bias), two to +-1 whatever they are: in both cases no signal and no
gradient pass through (their Jacobian is 0 almost everywhere). It happens when a feature map
shrinks to 1x1 under a GroupNorm with as many groups as channels, or a LayerNorm/RMSNorm spans
a last axis of size 1. Found on a stock Hugging Face BiT (transformers 5.24: pre-activation
ResNet with GroupNorm, ``num_groups=8``) built small (hidden sizes 16-32, 32x32 images): the last
stage's bottleneck (8 channels, 1x1) normalises groups of one value, its branch carries nothing,
and check read the zero branch as an ``exploding-gradient`` and a ``signal-collapse`` (4.8 and 5.5
orders) whose He re-draw did not help.

The rule measures each called norm layer at its traced input shape (those whose layout says they
hold more than two values per group, and BatchNorms, which also pool over the batch, are skipped)
(``measure.norm_scale.input_sensitivity``: the Jacobian's median gain on a Gaussian input) against
its gain (the larger of its effective gain on its own probe shape and its gain vector's RMS; 1
without a gain vector): below ``DEGENERATE`` of it, the layer is degenerate. A warning, not an
error: where a skip path runs past the branch (BiT) the net still trains, only without that
branch; in a plain chain the probe's own findings (a collapsed signal) say the rest. A norm whose gain is
near 0 is ``poor-init``'s (``norm_gains``), not this rule's. Remedy ``norm-groups``: a GroupNorm's
group count lowered until each group holds ``norm_groups.MIN_VALUES`` values; for other norms the
message says what to change (their size is the model's).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(8, 8), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    >>> f = degenerate_norms(ModelMap(net, torch.randn(2, 3, 3, 3)), net)[0]
    >>> f.code, f.severity, f.layers, f.evidence["per_layer"]["1"]["values"]
    ('degenerate-norm', 'warning', ['1'], 1)
"""

from __future__ import annotations

import math

from torch import nn

from graddoctor.measure.norm_scale import effective_gain, input_sensitivity, probe_shape
from graddoctor.modelmap import ModelMap, modules_by_name
from graddoctor.report import Finding

#: a norm passing less than this fraction of its gain back is degenerate
DEGENERATE = 0.05
#: below this gain a norm is poor-init's (norm gains near zero), not degenerate
SMALL_GAIN = 0.1

REF = ("Wu & He 2018 (Group Normalization: statistics over C/G channels x H x W values); "
       "Ba et al. 2016 (Layer Normalization)")


def values_per_group(module: nn.Module, input_shape: tuple[int, ...]) -> int | None:
    """How many values one normalisation group holds at ``input_shape`` (per sample), when the
    layer says it: GroupNorm (C/G x spatial), LayerNorm/RMSNorm (their ``normalized_shape``).

    Example:
        >>> values_per_group(nn.GroupNorm(4, 16), (2, 16, 3, 3)), values_per_group(nn.LayerNorm(1), (5, 1))
        (36, 1)
    """
    if isinstance(module, nn.GroupNorm) and len(input_shape) >= 2:
        return module.num_channels // module.num_groups * math.prod(input_shape[2:])
    shape = getattr(module, "normalized_shape", None)
    if isinstance(shape, (tuple, list)) and all(isinstance(d, int) for d in shape):
        return math.prod(shape)
    return None


def _gain(module: nn.Module) -> float:
    w = getattr(module, "weight", None)
    if not isinstance(w, nn.Parameter) or w.dim() != 1:
        return 1.0
    rms = float(w.detach().float().pow(2).mean().sqrt())
    return max(effective_gain(module, probe_shape(module)) or 0.0, rms)


def degenerate_norms(m: ModelMap, model: nn.Module) -> list[Finding]:
    """Norm layers that pass (almost) nothing back at their traced input: a ``degenerate-norm`` warning."""
    mods = modules_by_name(model)
    hits: dict[str, dict] = {}
    for x in m.layers:
        mod = mods.get(x.name)
        if x.kind != "norm" or mod is None or not x.input_shape or isinstance(mod, nn.modules.batchnorm._BatchNorm):
            continue  # (a BatchNorm normalises over the batch too: torch refuses one value per channel)
        n = values_per_group(mod, tuple(x.input_shape))
        if n is not None and n > 2:  # a known layout with enough values: nothing to measure
            continue
        try:
            gain = _gain(mod)
        except Exception:  # noqa: BLE001 - a norm whose gain cannot be read (meta tensors): no word
            continue
        if gain < SMALL_GAIN:
            continue
        passed = input_sensitivity(mod, tuple(x.input_shape))
        if passed is not None and passed < DEGENERATE * gain:
            hits[x.name] = {"values": n, "passed": round(passed, 6),
                            "gain": round(gain, 4), "input_shape": list(x.input_shape),
                            "groupnorm": isinstance(mod, nn.GroupNorm)}
    if not hits:
        return []
    name, first = next(iter(hits.items()))
    sizes = sorted({h["values"] for h in hits.values() if h["values"] is not None})
    held = f"groups of {' or '.join(map(str, sizes))} value(s)" if sizes else "too few values per group"
    gn = [n for n, h in hits.items() if h["groupnorm"]]
    fix = ("fewer groups (GroupNorm num_groups), a larger input, or no norm where the map is 1x1" if gn else
           "normalise over more values (a larger normalized_shape), or drop the norm there")
    msg = (f"{len(hits)} normalisation layer(s) ({name}{', ...' if len(hits) > 1 else ''}) normalise {held} at "
           f"this input (shape {tuple(first['input_shape'])}): the output is the layer's bias (or +-gain) whatever "
           f"comes in, so no signal and no gradient pass through it - gradient and signal findings behind it "
           f"are its effect; use {fix}")
    ev = {"per_layer": hits, "threshold": DEGENERATE}
    return [Finding("degenerate-norm", "warning", msg, list(hits), ev, ["norm-groups"] if gn else [], reference=REF)]


__all__ = ["DEGENERATE", "degenerate_norms", "values_per_group"]
