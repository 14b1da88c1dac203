"""Models graddoctor cannot hook or measure as they are, each named in one line with a workaround.

- TorchScript modules (``torch.jit.script`` / ``torch.jit.trace``): no Python hooks.
- Lazy modules not yet run (``nn.LazyLinear``, ...): their parameters have no shape yet.
- Parameters on the ``meta`` device: they hold no values.
- A model with no parameters at all: there is no gradient to check.

Example:
    >>> from torch import nn
    >>> unsupported_reason(nn.Sequential(nn.LazyLinear(2)))
    "module '0' (LazyLinear) has uninitialised (lazy) parameters - run one forward on a batch first (model(x)) to materialise them"
    >>> unsupported_reason(nn.Linear(2, 2)) is None
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parameter import UninitializedParameter

from graddoctor.errors import InputError


def script_module(model: nn.Module) -> str | None:
    """The name of the first TorchScript module in ``model`` ("" for the model itself), or None.

    Example:
        >>> script_module(nn.Linear(2, 2)) is None
        True
    """
    if isinstance(model, torch.jit.ScriptModule):
        return ""
    return next((n for n, m in model.named_modules() if isinstance(m, torch.jit.ScriptModule)), None)


def unsupported_reason(model: nn.Module) -> str | None:
    """Why graddoctor cannot run ``model`` as it is (one line with a workaround), or None."""
    name = script_module(model)
    if name is not None:
        what = "the model" if name == "" else f"module {name!r}"
        return (f"{what} is a TorchScript module (torch.jit.script/trace), which takes no Python hooks "
                "- pass the eager nn.Module, before scripting it")
    if next(model.parameters(), None) is None:
        return (f"the model ({type(model).__name__}) has no parameters, so there is nothing to check "
                "- pass the module that holds the weights")
    return uninitialised_reason(model)


def uninitialised_reason(model: nn.Module) -> str | None:
    """Why the parameters of ``model`` cannot be measured yet (lazy or on the meta device), or None.

    Example:
        >>> uninitialised_reason(nn.Linear(2, 2)) is None
        True
    """
    for mname, m in model.named_modules():
        for p in (*m.parameters(recurse=False), *m.buffers(recurse=False)):
            label = f"module {mname!r} ({type(m).__name__})" if mname else f"the model ({type(m).__name__})"
            if isinstance(p, UninitializedParameter) or isinstance(p, nn.parameter.UninitializedBuffer):
                return (f"{label} has uninitialised (lazy) parameters - run one forward on a batch "
                        "first (model(x)) to materialise them")
            if p.device.type == "meta":
                return (f"{label} has parameters on the meta device, which hold no values - load or "
                        "initialise the weights first (model.to_empty(device='cpu') then init, or load_state_dict)")
    return None


def require_supported(model: nn.Module, verb: str) -> None:
    """Raise a one-line ``InputError`` (``"<verb>(): <reason>"``) when ``unsupported_reason`` gives one.

    Example:
        >>> require_supported(nn.Linear(2, 2, device="meta"), "check")
        Traceback (most recent call last):
        graddoctor.errors.InputError: check(): the model (Linear) has parameters on the meta device, ...
    """
    reason = unsupported_reason(model)
    if reason is not None:
        raise InputError(f"{verb}(): {reason}")


__all__ = ["require_supported", "script_module", "uninitialised_reason", "unsupported_reason"]
