"""Residual wrapping: add skip connections around the blocks of ``nn.Sequential`` chains.

``residual`` wraps a block ``f`` as ``x -> s(x) + f(x)`` and ``rezero`` as
``x -> s(x) + alpha * f(x)`` with ``alpha`` a learnable scalar starting at 0, so a
rezero-wrapped block is exactly ``s`` at initialisation (Bachlechner et al. 2020).
``s`` is the identity when the block keeps the shape, otherwise a projection:
``Linear(F_in, F_out, bias=False)`` or a strided 1x1 convolution (He et al. 2016,
option B) with PyTorch's default init (``repair`` re-initialises before adding skips).
Wrapping moves modules under new names and changes no layer's weights or activation.

How the chain is cut into blocks: the children of each ``nn.Sequential`` are
grouped into *units* (a weight layer with the norms, activations, dropouts
after it; or a whole sub-module that holds layers, like a ResNet BasicBlock).
Weight-layer units are paired into blocks of ``block_size`` (2 by default, the
ResNet basic block); a sub-module unit is a block on its own. Units that hold
the model's output layer, a leading stem that changes the shape, and units whose
rank changes (``Flatten``) are left outside. Sequentials are processed
innermost first; one that already contains a wrapped block is skipped. A skip
path inside a custom ``forward`` cannot be added by module surgery: models
without any ``nn.Sequential`` chain get a "manual" change instead.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
    ...                     nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> new, change = add_residual(net, torch.randn(3, 4), rezero=True)
    >>> change.modules
    ['2']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.fix.remedies.base import (
    Change,
    like,
    modules_by_name,
    need_inputs,
    place_like,
    target,
)
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap import ModelMap, module_names


class Residual(nn.Module):
    """``shortcut(x) + body(x)``, or ``shortcut(x) + alpha * body(x)`` with ``rezero=True``.

    Example:
        >>> block = Residual(nn.Sequential(nn.Linear(3, 3), nn.ReLU()), rezero=True)
        >>> x = torch.randn(2, 3)
        >>> torch.equal(block(x), x)
        True
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, rezero: bool = False) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.alpha = nn.Parameter(torch.zeros(())) if rezero else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return self.shortcut(x) + (self.alpha * y if self.alpha is not None else y)


def projection(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> nn.Module | None:
    """Identity (None), a bias-free Linear, or a strided 1x1 conv mapping in_shape to out_shape.

    Raises ValueError when no such shortcut exists (rank or batch change, non-integer stride).

    Example:
        >>> projection((2, 8), (2, 8)) is None, type(projection((2, 3, 8, 8), (2, 6, 4, 4))).__name__
        (True, 'Conv2d')
    """
    if in_shape == out_shape:
        return None
    if len(in_shape) != len(out_shape) or in_shape[0] != out_shape[0]:
        raise ValueError(f"no shortcut from {in_shape} to {out_shape}")
    if len(in_shape) == 2 or (len(in_shape) == 3 and in_shape[1] == out_shape[1]):
        return nn.Linear(in_shape[-1], out_shape[-1], bias=False)
    spatial_in, spatial_out = in_shape[2:], out_shape[2:]
    if any(o == 0 or i % o for i, o in zip(spatial_in, spatial_out)):
        raise ValueError(f"no strided shortcut from {in_shape} to {out_shape}")
    stride = tuple(i // o for i, o in zip(spatial_in, spatial_out))
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}.get(len(spatial_in))
    if conv is None:
        raise ValueError(f"no conv shortcut for rank {len(in_shape)}")
    return conv(in_shape[1], out_shape[1], 1, stride=stride, bias=False)


def add_residual(
    model: nn.Module,
    example_inputs: Any = None,
    *,
    rezero: bool = False,
    block_size: int = 2,
    inplace: bool = False,
    mmap: ModelMap | None = None,
) -> tuple[nn.Module, Change]:
    """Wrap the blocks of every ``nn.Sequential`` chain in ``Residual`` (see module doc).

    Args:
        example_inputs: a batch (required: block input/output shapes decide the shortcut).
        rezero: zero-initialised gain on the residual branch (remedy "rezero").
        block_size: weight-layer units per block.
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs`` if already built (no new
            trace: output layers and block shapes come from it).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(),
        ...                     nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
        >>> type(add_residual(net, torch.randn(5, 2))[0][2]).__name__
        'Residual'
    """
    remedy = "rezero" if rezero else "residual"
    need_inputs(example_inputs, remedy)
    new = target(model, inplace)
    mm = mmap if mmap is not None else ModelMap(new, example_inputs)
    output_layers = {x.name for x in mm.layers if x.is_output}
    first = module_names(new)  # the map's names: a shared module under its first name
    by_first = {n: m for m, n in first.items()}
    shapes = {by_first[n]: io for n, io in mm.module_shapes.items()
              if n in by_first and io[0] is not None and io[1] is not None}
    mods = modules_by_name(new)
    wrapped: list[str] = []
    projected: list[str] = []
    seqs = [(n, m) for n, m in new.named_modules() if isinstance(m, nn.Sequential)]
    seqs.sort(key=lambda nm: -nm[0].count("."))  # innermost first
    touched: set[str] = set()
    for sname, seq in seqs:
        if any(not sname or t == sname or t.startswith(f"{sname}.") for t in touched) \
                or _is_primitive(seq):
            continue
        prefix = f"{sname}." if sname else ""
        units = _units(seq)
        blocks = _blocks(units, prefix, output_layers, shapes, mods, block_size)
        for keys in blocks:
            first, last = seq._modules[keys[0]], seq._modules[keys[-1]]
            if first not in shapes or last not in shapes:
                continue
            in_shape, out_shape = shapes[first][0], shapes[last][1]
            try:
                short = projection(in_shape, out_shape)
            except ValueError:
                continue
            params = [p for k in keys for p in seq._modules[k].parameters()]
            if params and not any(p.requires_grad for p in params):
                continue  # a frozen block (a pretrained backbone) is the user's to keep: no new gain in it
            body = seq._modules[keys[0]] if len(keys) == 1 else nn.Sequential(
                *[seq._modules[k] for k in keys])
            block = Residual(body, None if short is None else place_like(short, body), rezero=rezero)
            if block.alpha is not None:  # the gain takes the body's dtype and device
                block.alpha = nn.Parameter(torch.zeros((), **like(body)))
            seq._modules[keys[0]] = block
            for k in keys[1:]:
                seq._modules[k] = nn.Identity()
            wrapped.append(prefix + keys[0])
            if short is not None:
                projected.append(prefix + keys[0])
            touched.add(sname)
    if not wrapped:
        return new, Change(remedy, [], "no nn.Sequential chain to wrap: add skip connections "
                           "(x = x + block(x)) in the model's forward", "manual",
                           {"code": "x = x + block(x)  # in forward, around each block"})
    why = ("skip connections give the gradient a path around every block, so it does not "
           "shrink with depth (He et al. 2016)"
           + ("; the zero-initialised gain makes each block the identity at init "
              "(ReZero, Bachlechner et al. 2020)" if rezero else ""))
    return new, Change(remedy, wrapped, why, "applied",
                       {"blocks": len(wrapped), "projections": projected, "rezero": rezero,
                        "block_size": block_size})


def _is_primitive(m: nn.Module) -> bool:
    """A weight layer, or a Sequential of one weight layer followed by norms (norm.py's wrapper)."""
    if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
        return True
    if isinstance(m, nn.Sequential) and len(m) >= 1 and isinstance(m[0], (nn.Linear, nn.modules.conv._ConvNd)):
        return all(_is_norm(c) for c in list(m)[1:])
    return False


def _is_norm(m: nn.Module) -> bool:
    return isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) or \
        "norm" in type(m).__name__.lower()


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _units(seq: nn.Sequential) -> list[tuple[list[str], bool]]:
    """Children grouped into units: (keys, composite)."""
    units: list[tuple[list[str], bool]] = []
    for key, child in seq._modules.items():
        starts = _has_params(child) and not _is_norm(child) and kinds.of_module(child) is None
        if starts or not units:
            units.append(([key], starts and not _is_primitive(child)))
        else:
            units[-1][0].append(key)
    return units


def _blocks(units: list[tuple[list[str], bool]], prefix: str, output_layers: set[str],
            shapes: dict, mods: dict, block_size: int) -> list[list[str]]:
    """Consecutive units grouped into blocks to wrap (see module doc)."""

    def holds_output(keys: list[str]) -> bool:
        names = [prefix + k for k in keys]
        return any(o == n or o.startswith(f"{n}.") for o in output_layers for n in names)

    def shape_of(keys: list[str]) -> tuple | None:
        a, b = mods.get(prefix + keys[0]), mods.get(prefix + keys[-1])
        if a not in shapes or b not in shapes:
            return None
        return shapes[a][0], shapes[b][1]

    usable = []
    for i, (keys, composite) in enumerate(units):
        io = shape_of(keys)
        if io is None or holds_output(keys) or len(io[0]) != len(io[1]):
            usable.append(None)
            continue
        if not any(_has_params(mods[prefix + k]) for k in keys):
            usable.append(None)
            continue
        if i == 0 and io[0] != io[1] and not composite:  # the stem
            usable.append(None)
            continue
        usable.append((keys, composite))
    blocks, run = [], []
    for u in usable + [None]:
        if u is None or u[1]:
            blocks += _chunk(run, block_size)
            run = []
            if u is not None:
                blocks.append(u[0])
        else:
            run.append(u[0])
    return blocks


def _chunk(run: list[list[str]], size: int) -> list[list[str]]:
    out = []
    for i in range(0, len(run), size):
        part = run[i:i + size]
        out.append([k for keys in part for k in keys])
    return out


@register("residual", family="skip", needs_inputs=True, options=("block_size",),
          summary="identity/projection shortcuts around Sequential blocks")
@register("rezero", family="skip", needs_inputs=True, options=("block_size",),
          summary="shortcuts with a zero-initialised gain (ReZero)")
def add_skips(model: nn.Module, layers: list[str] | None,
              ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """The registered remedy: ``add_residual`` (``rezero`` when ``ctx.remedy`` is "rezero");
    ``layers`` is ignored (every Sequential chain is wrapped).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: ignored.
        ctx: ``ctx.example_inputs`` required (block shapes); ``ctx.options["block_size"]``.

    Returns:
        ``(new_model, change)``; a "manual" change when the model has no Sequential chain.

    Raises:
        InputError: no example inputs.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
        ...                     nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> add_skips(net, None, RemedyContext("rezero", torch.randn(3, 2)))[1].details["rezero"]
        True
    """
    return add_residual(model, ctx.example_inputs, rezero=ctx.remedy == "rezero",
                        inplace=ctx.inplace, mmap=ctx.model_map, **ctx.options)


__all__ = ["Residual", "add_residual", "add_skips", "projection"]
