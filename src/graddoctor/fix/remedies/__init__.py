"""The remedies: one registry (``registry.py``), one signature, one small module per family.

Every remedy is ``fn(model, layers, ctx) -> (new_model, Change)`` (see ``registry``) and
registers itself where it is defined; importing this package imports every remedy module.
``ctx.model_map`` is the ``ModelMap`` of the model on ``ctx.example_inputs`` when the caller
already has one (``repair`` shares one map along the plan: a remedy that keeps the map exact
returns it as ``change.mmap``, and a remedy that keeps the structure, ``Remedy.keeps_map``,
leaves it valid).

| id | module | what | ``layers`` |
|---|---|---|---|
| relu, leaky-relu, gelu, elu, silu | activation.py | swap saturating hidden activation modules (leaky-relu also plain ReLU) | activation sites |
| he-init, xavier-init, orthogonal-init, lsuv-init | init.py | re-draw Linear/Conv weights for the activation that follows | weight layers |
| batchnorm | norm.py | insert BatchNorm after hidden Linear/Conv layers | weight layers |
| layernorm, groupnorm | norm.py | replace BatchNorm if the model has any, else insert after hidden layers | weight layers (insertion) |
| residual, rezero | residual.py | skip connections around the blocks of Sequential chains | ignored |
| edge-of-chaos-init, looks-linear-init | critical_init.py | init-only, from mean-field theory (``meanfield.py``): orthogonal at the edge of chaos (sigmoid/tanh), looks-linear (ReLU family) | weight layers |
| clip-norm, clip-value, clip-agc | clip.py | gradient clipping as an optimizer step pre-hook | ignored |
| lstm, lower-lr, lr-find | advice.py | recommendations (code change / advice) | ignored |
| warmup | warmup.py | linear learning-rate warm-up as an optimizer step hook | ignored |
| prenorm | prenorm.py | post-LN Transformer blocks -> pre-LN | ignored |
| train-mode | train_mode.py | BatchNorm layers in eval mode back to training mode | BatchNorm layers |
| norm-groups | norm_groups.py | GroupNorms with one or two values per group get fewer groups | GroupNorm layers |

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor import remedies
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    >>> new, change = remedies.apply("relu", net, torch.randn(2, 4))
    >>> type(new[1]).__name__, type(net[1]).__name__, change.remedy
    ('ReLU', 'Sigmoid', 'relu')
"""

from __future__ import annotations

from graddoctor.fix.remedies import (
    activation,
    advice,
    clip,
    critical_init,
    gate_bias,
    init,
    norm,
    norm_gain,
    norm_groups,
    prenorm,
    residual,
    train_mode,
    warmup,
)
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import REMEDIES, Remedy, RemedyContext, apply, get, register

__all__ = ["REMEDIES", "Change", "Remedy", "RemedyContext", "activation", "advice", "apply", "clip",
           "critical_init", "gate_bias", "get", "init", "norm", "norm_gain", "norm_groups", "prenorm", "register", "residual", "train_mode", "warmup"]
