"""poor-init, normalisation gains: most norm layers start with a gain near zero.

A norm layer's output is its normalised input times its gain. The standard init of a gain is 1
(Ioffe & Szegedy 2015; Ba et al. 2016); drawn near 0, every norm scales the signal and the
gradient through it by that gain, and the net starts as a near-constant function. Found on stock
models: Hugging Face's ``MobileViTPreTrainedModel._init_weights`` (transformers 5.24) draws every
BatchNorm gain from N(0, ``initializer_range`` = 0.02); a small MobileViT trained from it sat at
ln 4 for 300 steps (AdamW 1e-3, a learnable 4-class task) and fell to 0.07 in 60 steps with the
gains set to 1. An OLMo-2 with every RMSNorm gain zeroed sits at ln V.

The rule reads each called norm's effective gain (``measure.norm_scale.effective_gain``: a gain
parametrised as ``1 + w``, Gemma's, reads 1 at w = 0) and fires when more than ``SMALL_FRAC`` of
them (at least 2) are below ``SMALL_GAIN``, and the weights do not look trained. Deliberate zero
gains (zero-init residual: the last BatchNorm of each residual branch, Goyal et al. 2017) are at
most half of a network's norms (a ResNet's stem, first-in-block and shortcut norms keep gain 1),
which ``SMALL_FRAC`` leaves out. Remedy ``norm-gain``: those gains set to 1, other weights kept.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.LayerNorm(8))
    >>> for i in (1, 4): _ = nn.init.normal_(net[i].weight, 0.0, 0.02)
    >>> [(f.code, f.remedies) for f in small_norm_gains(ModelMap(net, torch.randn(4, 8)), net)]
    [('poor-init', ['norm-gain'])]
"""

from __future__ import annotations

import math
import statistics

from torch import nn

from graddoctor.measure.norm_scale import effective_gain, probe_shape
from graddoctor.measure.trained import looks_trained
from graddoctor.modelmap import ModelMap, modules_by_name
from graddoctor.report import Finding

#: an effective gain below this is "near zero"
SMALL_GAIN = 0.1
#: a traced input larger than this per sample is probed on a small shape of the layer's own
#: (``norm_scale.probe_shape``) first
PROBE_NUMEL = 1 << 16
#: the fraction of the called norm layers with a small gain above which the rule fires
SMALL_FRAC = 0.5

REF = "Ioffe & Szegedy 2015 (BatchNorm: gain initialised to 1); Ba et al. 2016 (Layer Normalization)"


def small_norm_gains(m: ModelMap, model: nn.Module) -> list[Finding]:
    """Most called norm layers with an effective gain below ``SMALL_GAIN``: a ``poor-init`` warning."""
    mods = modules_by_name(model)
    gains = {}
    for x in m.layers:
        mod = mods.get(x.name)
        w = getattr(mod, "weight", None)
        if x.kind != "norm" or mod is None or not isinstance(w, nn.Parameter) or not w.requires_grad:
            continue
        traced = x.input_shape
        big = traced is not None and math.prod(traced[1:]) > PROBE_NUMEL  # (a long sequence, a big image)
        g = effective_gain(mod, probe_shape(mod) if big else traced)
        g = effective_gain(mod, traced) if g is None and big else g
        if g is not None:
            gains[x.name] = g
    small = [n for n, g in gains.items() if g < SMALL_GAIN]
    if len(small) < 2 or len(small) <= SMALL_FRAC * len(gains) or looks_trained(model):
        return []
    med = statistics.median(gains[n] for n in small)
    ev = {"norms_small": len(small), "norms": len(gains), "median_small_gain": round(med, 4),
          "threshold": SMALL_GAIN}
    msg = (f"{len(small)} of {len(gains)} normalisation layers start with a gain near zero (median effective "
           f"gain {med:.3g}, the standard init is 1): each scales the signal and the gradient through it "
           "by that gain, so the net starts as a near-constant function")
    return [Finding("poor-init", "warning", msg, small, ev, ["norm-gain"], reference=REF)]


__all__ = ["SMALL_FRAC", "SMALL_GAIN", "small_norm_gains"]
