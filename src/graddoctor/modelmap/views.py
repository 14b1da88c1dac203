"""Views on a map: the model's parameters grouped by layer, the map as a table.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    >>> [n for n, _ in param_groups(ModelMap(net, torch.randn(1, 2)), net)]
    ['0']
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from graddoctor.modelmap.names import modules_by_name

if TYPE_CHECKING:
    from graddoctor.modelmap import ModelMap


def _parent(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _owner_order(mmap: ModelMap, mods: dict[str, nn.Module]) -> list[str]:
    """Layer names in execution order, uncalled owners after their nearest called ancestor (or
    last), then activation modules with parameters (PReLU)."""
    order = [layer.name for layer in mmap.layers]
    for n in mmap.uncalled:
        parent = _parent(n)
        while parent and parent not in order:
            parent = _parent(parent)
        if parent in order:
            order.insert(order.index(parent) + 1, n)
        else:
            order.append(n)
    for s in mmap.activations:
        if (not s.functional and s.name in mods and s.name not in order
                and any(True for _ in mods[s.name].parameters(recurse=False))):
            order.append(s.name)
    return order


def param_groups(mmap: ModelMap, model: nn.Module) -> list[tuple[str, list[nn.Parameter]]]:
    """All parameters of ``model`` grouped by owning module, layers in execution order.

    Modules never called (``mmap.uncalled``) follow their nearest called ancestor, or go
    last. Each parameter appears once (shared ones under their first owner); parameters no
    module of the map owns come last as ``"<other>"``.

    Args:
        mmap: the map of ``model``.
        model: the model whose parameters to group.

    Returns:
        ``[(module name, [parameters])]``, no group empty.

    Example:
        >>> import torch
        >>> from graddoctor.modelmap import ModelMap
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.PReLU(), nn.Linear(3, 1))
        >>> [(n, len(ps)) for n, ps in param_groups(ModelMap(net, torch.randn(1, 2)), net)]
        [('0', 2), ('2', 2), ('1', 1)]
    """
    mods = modules_by_name(model)
    seen: set[int] = set()
    groups = []
    for n in _owner_order(mmap, mods):
        if n not in mods:
            continue
        ps = [p for p in mods[n].parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in ps)
        if ps:
            groups.append((n, ps))
    rest = [p for p in model.parameters() if id(p) not in seen]
    if rest:
        groups.append(("<other>", rest))
    return groups


def layer_table(mmap: ModelMap) -> str:
    """The map as text: its summary line, then one row per layer (index, name, type, depth,
    activation, output shape); ``xN`` marks a layer called N times, ``(out)`` an output layer.

    Args:
        mmap: a map.

    Returns:
        The table, rows joined by newlines.

    Example:
        >>> import torch
        >>> from graddoctor.modelmap import ModelMap
        >>> print(layer_table(ModelMap(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.randn(1, 2))))
        ModelMap(Sequential: 1 layers, 1 activation sites, path 1..1)
           # layer                            type                   depth activation   output
           0 0                                Linear                     1 relu (out)   (1, 2)
    """
    rows = [repr(mmap), f"{'#':>4} {'layer':<32} {'type':<18} {'depth':>9} {'activation':<12} output"]
    for i, x in enumerate(mmap.layers):
        depth = f"{x.min_depth}..{x.depth}" if x.min_depth != x.depth else str(x.depth)
        act = (x.activation or "-") + (" (out)" if x.is_output else "")
        shared = f" x{x.calls}" if x.calls > 1 else ""
        rows.append(f"{i:>4} {x.name or '<model>':<32} {x.type + shared:<18} {depth:>9} {act:<12} {x.output_shape}")
    return "\n".join(rows)


__all__ = ["layer_table", "param_groups"]
