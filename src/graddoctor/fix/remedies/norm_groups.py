"""``norm-groups``: a GroupNorm whose groups hold one or two values at the model's input gets
fewer groups, so that each holds at least ``MIN_VALUES``; its gain and bias (per channel) stay.

A GroupNorm normalises each group of C/G channels over the H x W positions. On a 1x1 map with
as many groups as channels a group is one value: it normalises to 0 and the layer outputs its
bias whatever comes in (``diagnose.checktime.degenerate_norms``). The group count is the largest
divisor G of C with (C / G) x H x W >= ``MIN_VALUES`` (G = 1 at the least: a LayerNorm over the
channels). The weights are kept, so the change is warm-start safe (and no architecture change:
``keep_architecture`` keeps it); the spatial size is the one the finding (or the model map) traced.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.fix.remedies.registry import RemedyContext
    >>> from graddoctor.report import Finding
    >>> net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.GroupNorm(16, 16))
    >>> f = Finding("degenerate-norm", "error", "", ["1"], {"per_layer": {"1": {"input_shape": [2, 16, 1, 1]}}})
    >>> new, change = norm_groups(net, None, RemedyContext("norm-groups", findings=[f]))
    >>> new[1].num_groups, net[1].num_groups, change.kind
    (2, 16, 'applied')
"""

from __future__ import annotations

import copy
import math

from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register

#: the fewest values a group should hold (Wu & He 2018 use 32 groups over maps of 7x7 and more)
MIN_VALUES = 8


def fewer_groups(channels: int, spatial: int, groups: int) -> int:
    """The largest divisor G <= ``groups`` of ``channels`` whose groups hold >= ``MIN_VALUES``
    values at ``spatial`` positions (1 at the least).

    Example:
        >>> fewer_groups(32, 1, 32), fewer_groups(8, 1, 8), fewer_groups(64, 4, 32)
        (4, 1, 32)
    """
    return max([g for g in range(1, groups + 1) if channels % g == 0 and channels // g * spatial >= MIN_VALUES]
               or [1])


def _shapes(ctx: RemedyContext) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in ctx.findings or []:
        for name, h in (f.evidence.get("per_layer") or {}).items() if f.code == "degenerate-norm" else ():
            if isinstance(h, dict) and h.get("input_shape"):
                out[name] = list(h["input_shape"])
    if ctx.model_map is not None:
        for x in ctx.model_map.layers:
            if x.input_shape and x.name not in out:
                out[x.name] = list(x.input_shape)
    return out


@register("norm-groups", family="norm-setting", keeps_map=True,
          summary="GroupNorms with one or two values per group get fewer groups (gain and bias kept)")
def norm_groups(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Lower the group count of the GroupNorms in ``layers`` (None: those the findings name) whose
    groups hold fewer than ``MIN_VALUES`` values at their traced input (``fewer_groups``).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: module names; others, non-GroupNorms and layers without a traced shape are left alone.
        ctx: ``ctx.findings`` (``degenerate-norm`` evidence: input shapes), ``ctx.model_map``.

    Returns:
        ``(new_model, change)``: "applied" with the old and new group counts, or "advice".

    Raises:
        Nothing.
    """
    new = model if ctx.inplace else copy.deepcopy(model)
    shapes = _shapes(ctx)
    mods = dict(new.named_modules())
    names = layers if layers is not None else [n for f in ctx.findings or [] if f.code == "degenerate-norm"
                                               for n in f.layers]
    changed: dict[str, list[int]] = {}
    for n in names:
        m, shape = mods.get(n), shapes.get(n)
        if not isinstance(m, nn.GroupNorm) or not shape or len(shape) < 2:
            continue
        spatial = math.prod(shape[2:])
        g = fewer_groups(m.num_channels, spatial, m.num_groups)
        if g != m.num_groups and m.num_channels // m.num_groups * spatial < MIN_VALUES:
            changed[n] = [m.num_groups, g]
            m.num_groups = g
    why = ("a GroupNorm over one value per group outputs its bias whatever comes in (two values: +-1), so "
           "nothing passes through it; fewer groups give each group enough values to normalise")
    if not changed:
        return new, Change("norm-groups", [], "no GroupNorm with too few values per group: " + why, "advice")
    return new, Change("norm-groups", sorted(changed), why, "applied", {"groups": changed})


__all__ = ["MIN_VALUES", "fewer_groups", "norm_groups"]
