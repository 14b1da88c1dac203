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

from collections.abc import Callable, Iterable
from typing import Any

from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change, modules_by_name, replace_modules, target
from graddoctor.modelmap import ACTIVATION_FAMILY, ModelMap, activation_kind

#: remedy id -> factory of the new activation module
FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky-relu": lambda: nn.LeakyReLU(0.01),
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "silu": nn.SiLU,
}

#: remedy id -> ModelMap activation kind it produces
KIND_OF: dict[str, str] = {"relu": "relu", "leaky-relu": "leaky_relu", "gelu": "gelu",
                           "elu": "elu", "silu": "silu"}

_SATURATING = {k for k, f in ACTIVATION_FAMILY.items() if f == "saturating"}


def default_sources(to: str) -> set[str]:
    """Activation kinds a swap to ``to`` replaces: saturating ones; plain ReLU too for leaky-relu."""
    return _SATURATING | ({"relu", "relu6"} if to == "leaky-relu" else set())


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
        to: one of ``FACTORIES`` ("relu", "leaky-relu", "gelu", "elu", "silu").
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
    if to not in FACTORIES:
        raise InputError(f"unknown activation {to!r}; choose one of {sorted(FACTORIES)}")
    sources = set(sources) if sources is not None else default_sources(to)
    wanted = set(sites) if sites is not None else None
    new = target(model, inplace)
    mods = modules_by_name(new)
    if mmap is None and example_inputs is not None:
        mmap = ModelMap(new, example_inputs)
    swap, manual, kept_output = [], [], []
    for name, kind, functional, is_output, owner in _sites(new, mmap):
        if kind not in sources or kind == KIND_OF[to]:
            continue
        if wanted is not None and name not in wanted and owner not in wanted:
            continue
        if is_output:
            kept_output.append(name)
        elif functional:
            cls = type(mods[owner]).__name__ if owner in mods else type(new).__name__
            where = f"{cls}.forward" + (f" (module {owner!r})" if owner else "")
            manual.append({"site": name, "module": owner, "from": kind,
                           "code": f"in {where}: replace the {kind} call by {_code(to)} "
                                   "(if it is a hidden activation, not a gate)"})
        elif name in mods:
            swap.append((name, kind))
    swaps: dict[nn.Module, nn.Module] = {}
    kind_of: dict[nn.Module, str] = {}
    for name, kind in swap:  # a module registered under several names is replaced once
        old = mods[name]
        if old not in swaps and activation_kind(old) is not None:
            swaps[old], kind_of[old] = FACTORIES[to](), kind
    replaced: list[str] = []
    old_kinds: dict[str, str] = {}
    now: dict[str, nn.Module] = {}
    for old, names in replace_modules(new, swaps).items():
        for n in names:
            replaced.append(n)
            old_kinds[n], now[n] = kind_of[old], swaps[old]
    why = (f"hidden {'/'.join(sorted(set(old_kinds.values()))) or 'saturating'} activations "
           f"{'saturate and shrink the gradient' if to != 'leaky-relu' else 'die or saturate'}; "
           f"{to} passes gradient 1 on its active side")
    kind = "applied" if replaced else ("manual" if manual else "advice")
    details = {"to": to, "from": old_kinds, "manual": manual, "kept_output": kept_output}
    new_map = mmap.with_activations(now) if mmap is not None else None
    return new, Change(to, replaced, why, kind, details, mmap=new_map)


def _sites(model: nn.Module, mm: ModelMap | None) -> list[tuple[str, str, bool, bool, str]]:
    """(name, kind, functional, is_output, owner) for each activation site."""
    if mm is not None:
        return [(s.name, s.kind, s.functional, s.is_output, s.owner) for s in mm.activations]
    mods = list(model.named_modules())
    last_param = max((i for i, (_, m) in enumerate(mods)
                      if any(True for _ in m.parameters(recurse=False))), default=-1)
    return [(n, k, False, i > last_param, n) for i, (n, m) in enumerate(mods)
            if n and (k := activation_kind(m)) is not None]


def _code(to: str) -> str:
    return {"relu": "F.relu(x)", "leaky-relu": "F.leaky_relu(x, 0.01)", "gelu": "F.gelu(x)",
            "elu": "F.elu(x)", "silu": "F.silu(x)"}[to]
