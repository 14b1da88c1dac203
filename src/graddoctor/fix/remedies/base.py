"""What every remedy returns (``Change``) and the small helpers remedies share.

A remedy is a pure function ``model -> (new_model, Change)``: it deep-copies the
model unless ``inplace=True`` and never touches the input otherwise.

Example:
    >>> from graddoctor.fix.remedies.base import Change
    >>> Change("relu", ["1", "3"], "sigmoid hidden activations saturate").kind
    'applied'
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError

#: what a change is: "applied" (the model was changed), "advice" (a recommendation),
#: "manual" (a code change the user has to make by hand)
CHANGE_KINDS: tuple[str, ...] = ("applied", "advice", "manual")


@dataclass
class Change:
    """One thing a remedy did (or asks the user to do).

    Args:
        remedy: the remedy id (see ``graddoctor.codes.REMEDY_IDS``); ``repair`` adds one
            "optimizer" change when the given optimizer does not hold the repaired parameters.
        modules: module names (as in ``named_modules()`` of the repaired model).
        why: one sentence: the reason.
        kind: "applied" | "advice" | "manual".
        details: JSON-able numbers and strings (old/new kinds, scales, code to write).
        hooks: optimizer step pre-hooks to attach (clipping); not serialised.
        handles: removable handles of hooks already registered; not serialised.
        mmap: the ``ModelMap`` of the new model on the same example inputs, when the remedy
            could keep one exact without a new trace (``repair`` hands it to the next remedy
            and drops it); not serialised.
    """

    remedy: str
    modules: list[str]
    why: str
    kind: str = "applied"
    details: dict[str, Any] = field(default_factory=dict)
    hooks: list[Any] = field(default_factory=list, repr=False, compare=False)
    handles: list[Any] = field(default_factory=list, repr=False, compare=False)
    mmap: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in CHANGE_KINDS:
            raise ValueError(f"change kind must be one of {CHANGE_KINDS}, got {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        from graddoctor.report import jsonable

        return {"remedy": self.remedy, "modules": list(self.modules), "why": self.why,
                "kind": self.kind, "details": jsonable(self.details)}


def target(model: nn.Module, inplace: bool) -> nn.Module:
    """The model itself when ``inplace``, else a deep copy."""
    if not isinstance(model, nn.Module):
        raise InputError(f"repair needs an nn.Module, got {type(model).__name__}")
    return model if inplace else copy.deepcopy(model)


def replace_module(root: nn.Module, old: nn.Module, new: nn.Module) -> list[str]:
    """Replace every registration of ``old`` under ``root`` by ``new``; return the names replaced."""
    return replace_modules(root, {old: new})[old]


def replace_modules(root: nn.Module, swaps: dict[nn.Module, nn.Module]) -> dict[nn.Module, list[str]]:
    """Replace every registration of each ``old`` in ``swaps`` by its new module, in one walk
    over ``root``; return ``old -> sorted names replaced`` (O(modules), not O(modules x swaps)).

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 2), nn.Tanh())
        >>> out = replace_modules(net, {net[1]: nn.ReLU(), net[3]: nn.ReLU()})
        >>> sorted(n for names in out.values() for n in names), type(net[3]).__name__
        (['1', '3'], 'ReLU')
    """
    slots = [(pname, parent, key, child) for pname, parent in root.named_modules(remove_duplicate=False)
             for key, child in parent._modules.items() if child in swaps]
    names: dict[nn.Module, set[str]] = {old: set() for old in swaps}
    for pname, parent, key, child in slots:
        parent._modules[key] = swaps[child]
        names[child].add(f"{pname}.{key}" if pname else key)
    return {old: sorted(n) for old, n in names.items()}


def modules_by_name(model: nn.Module) -> dict[str, nn.Module]:
    """name -> module, every registration name included."""
    return dict(model.named_modules(remove_duplicate=False))


def frozen(module: nn.Module) -> bool:
    """Every parameter the layer holds itself is frozen (``requires_grad=False``): a remedy never re-draws it.

    Example:
        >>> frozen(nn.Linear(2, 2).requires_grad_(False)), frozen(nn.Linear(2, 2))
        (True, False)
    """
    return not any(p.requires_grad for p in module.parameters(recurse=False))


def need_inputs(example_inputs: Any, remedy: str) -> None:
    """One-line InputError when a data-dependent remedy gets no example inputs."""
    if example_inputs is None:
        raise InputError(f"remedy {remedy!r} needs example inputs: pass example_inputs=<a batch>")


def batch_size(example_inputs: Any) -> int | None:
    """The batch size of the first tensor of the example inputs (None if unknown)."""
    from graddoctor.inputs import first_tensor

    t = first_tensor(example_inputs) if example_inputs is not None else None
    return int(t.shape[0]) if t is not None and t.dim() > 0 else None


def device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def like(neighbour: nn.Module) -> dict[str, Any]:
    """``device=`` and ``dtype=`` of ``neighbour``'s first floating parameter or buffer (empty
    when it has none; no dtype on the meta device), for a new layer or tensor placed next to it.

    Example:
        >>> like(nn.Linear(2, 2).double())
        {'device': device(type='cpu'), 'dtype': torch.float64}
    """
    ref = next((t for t in (*neighbour.parameters(), *neighbour.buffers()) if t.is_floating_point()), None)
    if ref is None:
        return {}
    return {"device": ref.device} if ref.device.type == "meta" else {"device": ref.device, "dtype": ref.dtype}


def place_like(new: nn.Module, neighbour: nn.Module) -> nn.Module:
    """``new`` moved to the device and floating dtype of ``neighbour`` (``like``): an inserted
    layer computes like the layers around it (a float64 or bfloat16 model gets float64 or
    bfloat16 norms and gains).

    Example:
        >>> place_like(nn.LayerNorm(2), nn.Linear(2, 2).double()).weight.dtype
        torch.float64
    """
    return new.to(**like(neighbour))
