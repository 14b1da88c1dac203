"""Normalisation: insert BatchNorm / LayerNorm / GroupNorm after hidden Linear/Conv
layers, or replace BatchNorm when the batch is too small for its statistics.

Which norm (``choose``), by layer type and batch size ``B`` of the example inputs:

| layer output | B >= BN_INSERT_MIN_BATCH | B < BN_INSERT_MIN_BATCH (or unknown) |
|---|---|---|
| Linear on (B, F) | BatchNorm1d(F) | LayerNorm(F) |
| Linear on (B, T, F) (sequences) | LayerNorm(F) | LayerNorm(F) |
| Conv on (B, C, ...) | BatchNorm{1,2,3}d(C) | GroupNorm(g, C), g = ``groups_for(C, spatial=H*W)`` (<= 32 groups, >= 4 channels and >= 64 values each) |

Insertion wraps the layer as ``nn.Sequential(layer, norm)`` under the same name
(``fc.weight`` becomes ``fc.0.weight``), so the norm sits between the layer and
its activation (Ioffe & Szegedy 2015). Output layers and layers already
followed by a norm are skipped. ``groupnorm`` / ``layernorm`` on a model that has
BatchNorm *replace* those BatchNorms (the small-batch fix: Wu & He 2018), copying
the affine parameters; LayerNorm over a conv map is ``GroupNorm(1, C)``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> new, change = insert_norm(net, "auto", torch.randn(32, 4))
    >>> type(new[0][1]).__name__, change.modules
    ('BatchNorm1d', ['0'])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor.diagnose.thresholds import BN_INSERT_MIN_BATCH
from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import (
    Change,
    batch_size,
    modules_by_name,
    need_inputs,
    place_like,
    replace_module,
    replace_modules,
    target,
)
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap import ModelMap

#: GroupNorm keeps at least this many values (channels x positions) per group and sample
#: (measured, CNN on 8x8 digits, batch 2, 3 seeds: 2x2 maps with 8 groups of 4 channels,
#: 16 values each, 0.82 test acc; 2 groups of 16 channels, 64 values, 0.86)
MIN_GROUP_VALUES = 64

KINDS = ("auto", "batch", "layer", "group")


def groups_for(channels: int, most: int = 32, per_group: int = 4, spatial: int | None = None,
               min_values: int = MIN_GROUP_VALUES) -> int:
    """GroupNorm's group count: the largest divisor of ``channels`` that is <= ``most``
    and leaves at least ``per_group`` channels per group (Wu & He 2018 use 32 groups;
    fewer than 4 channels per group drifts towards InstanceNorm, which fails on small maps).
    Given the map's ``spatial`` size (H*W), each group also keeps >= ``min_values`` values
    per sample, so its mean and variance are not noise on small late-stage maps.

    Example:
        >>> groups_for(256), groups_for(64), groups_for(48), groups_for(8), groups_for(3)
        (32, 16, 12, 2, 1)
        >>> groups_for(32), groups_for(32, spatial=4), groups_for(256, spatial=49)
        (8, 2, 32)
    """
    cap = max(1, min(most, channels // per_group))
    if spatial is not None:
        cap = max(1, min(cap, channels * spatial // min_values))
    return next(g for g in range(cap, 0, -1) if channels % g == 0)


def choose(kind: str, layer_kind: str, out_shape: tuple[int, ...], batch: int | None) -> str:
    """Resolve "auto" (and impossible combinations) to "batch" | "layer" | "group"."""
    seq = layer_kind == "linear" and len(out_shape) > 2
    small = batch is None or batch < BN_INSERT_MIN_BATCH
    if kind == "auto":
        if layer_kind == "conv":
            return "group" if small else "batch"
        return "layer" if (small or seq) else "batch"
    if kind == "batch" and seq:
        return "layer"
    return kind


def make_norm(kind: str, layer_kind: str, out_shape: tuple[int, ...]) -> nn.Module:
    """The norm module for a layer output of ``out_shape`` ("batch" | "layer" | "group")."""
    if layer_kind == "conv":
        c, spatial = out_shape[1], len(out_shape) - 2
        if kind == "batch":
            return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial](c)
        groups = 1 if kind == "layer" else groups_for(c, spatial=_numel(out_shape[2:]))
        return nn.GroupNorm(groups, c)
    f = out_shape[-1]
    if kind == "batch":
        return nn.BatchNorm1d(f)
    if kind == "group":
        return nn.GroupNorm(groups_for(f), f) if len(out_shape) == 2 else nn.LayerNorm(f)
    return nn.LayerNorm(f)


def insert_norm(
    model: nn.Module,
    kind: str = "auto",
    example_inputs: Any = None,
    *,
    inplace: bool = False,
    layers: list[str] | None = None,
    mmap: ModelMap | None = None,
) -> tuple[nn.Module, Change]:
    """Insert a norm after every hidden Linear/Conv layer not already followed by one.

    Args:
        kind: "auto" (table above) | "batch" | "layer" | "group".
        example_inputs: a batch (required: gives the shapes and the batch size).
        layers: restrict to these module names.
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs`` if already built.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 2, 3))
        >>> new, _ = insert_norm(net, "auto", torch.randn(2, 3, 8, 8))
        >>> type(new[0][1]).__name__
        'GroupNorm'
    """
    if kind not in KINDS:
        raise InputError(f"unknown norm kind {kind!r}; choose one of {list(KINDS)}")
    need_inputs(example_inputs, f"{kind}norm")
    new = target(model, inplace)
    mm = mmap if mmap is not None else ModelMap(new, example_inputs)
    mods = modules_by_name(new)
    batch = batch_size(example_inputs)
    normed = _followed_by_norm(mm)
    done, chosen, swaps = [], {}, {}
    for layer in mm.layers:
        if (layer.kind not in ("linear", "conv") or layer.is_output or layer.calls > 1
                or layer.name in normed or layer.output_shape is None or not layer.name
                or (layers is not None and layer.name not in layers)):
            continue
        k = choose(kind, layer.kind, layer.output_shape, batch)
        norm = place_like(make_norm(k, layer.kind, layer.output_shape), mods[layer.name])
        old = mods[layer.name]
        swaps[old] = nn.Sequential(old, norm)
        done.append(layer.name)
        chosen[layer.name] = type(norm).__name__
    replace_modules(new, swaps)
    rid = {"batch": "batchnorm", "layer": "layernorm", "group": "groupnorm", "auto": "batchnorm"}
    remedy = rid[kind] if kind != "auto" else rid[_majority(chosen)]
    why = ("normalising each hidden layer's output keeps activations at unit scale whatever the "
           f"depth (Ioffe & Szegedy 2015); batch size {batch} chose {sorted(set(chosen.values()))}")
    return new, Change(remedy, done, why, "applied" if done else "advice",
                       {"norms": chosen, "batch_size": batch, "min_bn_batch": BN_INSERT_MIN_BATCH})


def replace_batchnorm(
    model: nn.Module,
    kind: str = "group",
    example_inputs: Any = None,
    *,
    inplace: bool = False,
    mmap: ModelMap | None = None,
) -> tuple[nn.Module, Change]:
    """Replace every BatchNorm by GroupNorm ("group") or LayerNorm ("layer"), affine copied.

    ``example_inputs`` (or ``mmap``, its ``ModelMap`` if already built) give the map sizes
    for the group count.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> type(replace_batchnorm(net, "group")[0][1]).__name__
        'GroupNorm'
    """
    if kind not in ("group", "layer"):
        raise InputError(f"BatchNorm can be replaced by 'group' or 'layer', got {kind!r}")
    new = target(model, inplace)
    shapes = _bn_input_shapes(new, example_inputs, mmap)
    done, chosen = [], {}
    for name, m in list(new.named_modules()):
        if not isinstance(m, nn.modules.batchnorm._BatchNorm):
            continue
        c = m.num_features
        shape = shapes.get(name)
        rank = len(shape) if shape else 4 if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)) else 2
        if rank == 2 and kind == "layer":
            norm: nn.Module = nn.LayerNorm(c, elementwise_affine=m.affine)
        else:
            spatial = _numel(shape[2:]) if shape else None
            norm = nn.GroupNorm(1 if kind == "layer" else groups_for(c, spatial=spatial), c,
                                affine=m.affine)
        if m.affine:
            norm.weight.data.copy_(m.weight.data)
            norm.bias.data.copy_(m.bias.data)
        norm = place_like(norm, m)
        done += replace_module(new, m, norm)
        chosen[name] = type(norm).__name__
    why = ("BatchNorm's batch statistics are noise at this batch size; GroupNorm/LayerNorm "
           "normalise each sample on its own (Wu & He 2018; Ba et al. 2016)")
    return new, Change("groupnorm" if kind == "group" else "layernorm", done, why,
                       "applied" if done else "advice", {"norms": chosen})


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds any BatchNorm layer.

    Example:
        >>> has_batchnorm(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))
        True
    """
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _bn_input_shapes(model: nn.Module, example_inputs: Any,
                     mm: ModelMap | None = None) -> dict[str, tuple[int, ...]]:
    if mm is None and example_inputs is None:
        return {}
    mm = mm if mm is not None else ModelMap(model, example_inputs)
    return {c.name: tuple(c.input_shape) for c in mm.calls if c.input_shape is not None}


def _numel(dims: Any) -> int:
    n = 1
    for d in dims:
        n *= int(d)
    return n


def _followed_by_norm(mm: ModelMap) -> set[str]:
    """Layers whose next parameter-owning call is a norm layer."""
    kinds = {x.name: x.kind for x in mm.layers}
    owners = [c for c in mm.calls if c.has_params]
    return {a.name for a, b in zip(owners, owners[1:]) if kinds.get(b.name) == "norm"}


def _majority(chosen: dict[str, str]) -> str:
    names = list(chosen.values())
    if not names:
        return "batch"
    top = max(set(names), key=names.count)
    return "batch" if "Batch" in top else ("group" if "Group" in top else "layer")


@register("batchnorm", family="norm", needs_inputs=True,
          summary="insert BatchNorm after hidden Linear/Conv layers")
@register("layernorm", "groupnorm", family="norm", needs_inputs=True,
          summary="replace BatchNorm by {id}, or insert {id} after hidden layers")
def normalise(model: nn.Module, layers: list[str] | None,
              ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """The registered remedy: ``groupnorm``/``layernorm`` replace BatchNorm where the model has
    some, else (and ``batchnorm`` always) ``insert_norm`` after the hidden ``layers``.

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: weight layers to follow with a norm (insertion only); None: every hidden one.
        ctx: ``ctx.remedy`` the norm; ``ctx.example_inputs`` required (shapes, batch size).

    Returns:
        ``(new_model, change)``.

    Raises:
        InputError: no example inputs for an insertion.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> type(normalise(net, None, RemedyContext("layernorm", torch.randn(4, 4)))[0][0][1]).__name__
        'LayerNorm'
    """
    kind = ctx.remedy.removesuffix("norm")  # "batch" | "layer" | "group"
    if kind != "batch" and has_batchnorm(model):
        return replace_batchnorm(model, kind, ctx.example_inputs, inplace=ctx.inplace,
                                 mmap=ctx.model_map)
    return insert_norm(model, kind, ctx.example_inputs, inplace=ctx.inplace, layers=layers,
                       mmap=ctx.model_map)


__all__ = ["MIN_GROUP_VALUES", "choose", "groups_for", "has_batchnorm",
           "insert_norm", "make_norm", "normalise", "replace_batchnorm"]
