"""Activation swap: saturating hidden activations -> ReLU / LeakyReLU / GELU / ELU / SiLU.

Only *hidden* activation modules are replaced (``ModelMap`` marks the ones on
the output side, which are kept: a sigmoid producing probabilities is not a bug).
LSTM/GRU gates live inside the cell and are never touched. Functional
activations (``torch.sigmoid(x)`` in a ``forward``) cannot be swapped by module
replacement: they are reported as a manual code change naming the site.

Why: sigmoid's derivative is at most 1/4 and tanh's saturates, so the gradient
shrinks geometrically with depth (Hochreiter 1991; Glorot & Bengio 2010); the
ReLU family passes gradient 1 on its active side (Nair & Hinton 2010; Maas et al.
2013 for leaky ReLU against dead units).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 2), nn.Sigmoid())
    >>> new, change = swap_activation(net, "relu", torch.randn(3, 4))
    >>> [type(m).__name__ for m in new], change.modules
    (['Linear', 'ReLU', 'Linear', 'Sigmoid'], ['1'])
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from graddoctor import kinds
from graddoctor.diagnose.checktime.frozen_part import frozen_names
from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change, modules_by_name, replace_modules, target
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap import ModelMap

#: the swap remedies (ids); each builds ``kinds.SWAP_MODULES[kind_of(id)]``
SWAPS: tuple[str, ...] = ("relu", "leaky-relu", "gelu", "elu", "silu")

_SATURATING = frozenset(k for k, f in kinds.FAMILY.items() if f == "saturating")


def kind_of(to: str) -> str:
    """The activation kind a swap remedy produces (``"leaky-relu"`` -> ``"leaky_relu"``).

    Args:
        to: a swap remedy id (``SWAPS``).

    Returns:
        The ``graddoctor.kinds`` kind name.

    Raises:
        Nothing.

    Example:
        >>> kind_of("leaky-relu"), kind_of("gelu")
        ('leaky_relu', 'gelu')
    """
    return to.replace("-", "_")


def default_sources(to: str) -> set[str]:
    """Activation kinds a swap to ``to`` replaces: saturating ones; the dying ReLUs too for leaky-relu.

    Args:
        to: a swap remedy id (``SWAPS``).

    Returns:
        The kinds (``graddoctor.kinds`` names) it replaces by default.

    Raises:
        Nothing.

    Example:
        >>> sorted(default_sources("leaky-relu") - default_sources("relu"))
        ['relu', 'relu6']
    """
    return set(_SATURATING | (kinds.DYING if to == "leaky-relu" else frozenset()))


def swap_activation(
    model: nn.Module,
    to: str = "relu",
    example_inputs: Any = None,
    *,
    inplace: bool = False,
    sources: Iterable[str] | None = None,
    sites: Iterable[str] | None = None,
    mmap: ModelMap | None = None,
) -> tuple[nn.Module, Change]:
    """Replace hidden activation modules of the ``sources`` kinds by ``to``.

    Args:
        model: the model (deep-copied unless ``inplace``).
        to: one of ``SWAPS`` ("relu", "leaky-relu", "gelu", "elu", "silu").
        example_inputs: a batch; with it, output-side activations and functional
            activations are found by a traced forward (``ModelMap``); without it, the
            activation modules are read from ``named_modules`` and those registered
            after the last parameter-owning module are taken as output-side.
        sources: activation kinds to replace (default: ``default_sources(to)``).
        sites: restrict to these site/module names (e.g. a finding's ``layers``).
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs`` if already built (no new
            trace); ``change.mmap`` is then the map of the new model (same data flow,
            new kinds: ``ModelMap.with_activations``).

    Returns:
        ``(new_model, change)``; ``change.details["manual"]`` lists functional sites
        that need a code change (``str(change)`` of the repair result prints them).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
        >>> type(swap_activation(net, "gelu")[0][1]).__name__
        'GELU'
    """
    if to not in SWAPS:
        raise InputError(f"unknown activation {to!r}; choose one of {sorted(SWAPS)}")
    sources = set(sources) if sources is not None else default_sources(to)
    wanted = set(sites) if sites is not None else None
    new = target(model, inplace)
    mods = modules_by_name(new)
    if mmap is None and example_inputs is not None:
        mmap = ModelMap(new, example_inputs)
    swap, manual, kept_output, kept_gates, kept_frozen = [], [], [], [], []
    frozen = frozen_names(new, mmap) if mmap is not None else set()  # (sites: known from a traced forward)
    for name, kind, functional, is_output, owner, gate in _sites(new, mmap):
        if kind not in sources or kind == kind_of(to):
            continue
        if wanted is not None and name not in wanted and owner not in wanted:
            continue
        if name in frozen:  # fed by frozen layers only (a pretrained backbone): the user's to keep
            kept_frozen.append(name)
        elif is_output:
            kept_output.append(name)
        elif gate:  # its output multiplies another tensor (GLU, SE, a gated tanh): a ReLU there
            kept_gates.append(name)  # would change what the block computes
        elif functional:
            cls = type(mods[owner]).__name__ if owner in mods else type(new).__name__
            where = f"{cls}.forward" + (f" (module {owner!r})" if owner else "")
            manual.append({"site": name, "module": owner, "from": kind,
                           "code": f"in {where}: replace the {kind} call by {_code(to)} "
                                   "(if it is a hidden activation, not a gate)"})
        elif name in mods:
            swap.append((name, kind))
    swaps: dict[nn.Module, nn.Module] = {}
    old_kind: dict[nn.Module, str] = {}
    for name, kind in swap:  # a module registered under several names is replaced once
        old = mods[name]
        if old not in swaps and kinds.of_module(old) is not None:
            swaps[old], old_kind[old] = kinds.SWAP_MODULES[kind_of(to)](), kind
    replaced: list[str] = []
    old_kinds: dict[str, str] = {}
    now: dict[str, nn.Module] = {}
    for old, names in replace_modules(new, swaps).items():
        for n in names:
            replaced.append(n)
            old_kinds[n], now[n] = old_kind[old], swaps[old]
    why = (f"hidden {'/'.join(sorted(set(old_kinds.values()))) or 'saturating'} activations "
           f"{'saturate and shrink the gradient' if to != 'leaky-relu' else 'die or saturate'}; "
           f"{to} passes gradient 1 on its active side")
    kind = "applied" if replaced else ("manual" if manual else "advice")
    details = {"to": to, "from": old_kinds, "manual": manual, "kept_output": kept_output, "kept_gates": kept_gates,
               "kept_frozen": kept_frozen}
    new_map = mmap.with_activations(now) if mmap is not None else None
    return new, Change(to, replaced, why, kind, details, mmap=new_map)


def _sites(model: nn.Module, mm: ModelMap | None) -> list[tuple[str, str, bool, bool, str, bool]]:
    """(name, kind, functional, is_output, owner, gate) for each activation site (gates are known
    from a traced forward only)."""
    if mm is not None:
        return [(s.name, s.kind, s.functional, s.is_output, s.owner, s.gate) for s in mm.activations]
    mods = list(model.named_modules())
    last_param = max((i for i, (_, m) in enumerate(mods)
                      if any(True for _ in m.parameters(recurse=False))), default=-1)
    return [(n, k, False, i > last_param, n, False) for i, (n, m) in enumerate(mods)
            if n and (k := kinds.of_module(m)) is not None]


def _code(to: str) -> str:
    kind = kind_of(to)
    return f"F.{kind}(x, {kinds.LEAKY_SLOPE})" if kind == "leaky_relu" else f"F.{kind}(x)"


@register(*SWAPS, family="activation", summary="swap saturating hidden activations for {id}",
          options=("sources",))
def swap(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """The registered remedy: ``swap_activation`` to ``ctx.remedy`` on the ``layers`` sites.

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: activation sites (module names) to swap; None: every hidden one.
        ctx: ``ctx.remedy`` the target (``SWAPS``); ``ctx.options["sources"]`` the kinds replaced.

    Returns:
        ``(new_model, change)``.

    Raises:
        InputError: an unknown target.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1))
        >>> type(swap(net, None, RemedyContext("elu"))[0][1]).__name__
        'ELU'
    """
    return swap_activation(model, ctx.remedy, ctx.example_inputs, inplace=ctx.inplace, sites=layers,
                           mmap=ctx.model_map, **ctx.options)
