"""Find the optimizer whose step hooks watch can use, under the wrappers frameworks add.

Accelerate's ``AcceleratedOptimizer`` subclasses ``torch.optim.Optimizer`` without its hook
state (``register_step_pre_hook`` fails on it), Lightning's ``LightningOptimizer`` is a plain
proxy; both step the optimizer they hold, so watch hooks that one. A wrapper is anything
holding the real optimizer in ``.optimizer`` (Accelerate, DeepSpeed, many schedulers-as-
optimizers) or ``._optimizer`` (Lightning).

Example:
    >>> import torch
    >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    >>> class Wrapper:
    ...     def __init__(self, optimizer): self.optimizer = optimizer
    >>> unwrap_optimizer(Wrapper(Wrapper(opt))) is opt
    True
"""

from __future__ import annotations

import warnings
from typing import Any

from graddoctor.errors import InputError
from graddoctor.stack import user_level

#: wrappers nested deeper than this are not followed (a cycle would loop forever)
_MAX_DEPTH = 8


def _has_hook_state(optimizer: Any) -> bool:
    """A real ``torch.optim.Optimizer``: it carries the hook dicts ``Optimizer.__init__`` sets."""
    return hasattr(optimizer, "register_step_pre_hook") and "_optimizer_step_pre_hooks" in vars(optimizer)


def unwrap_optimizer(optimizer: Any) -> Any:
    """The optimizer inside ``optimizer``'s wrappers (``.optimizer`` / ``._optimizer``), or
    ``optimizer`` itself when it is a real ``torch.optim.Optimizer`` or holds none.

    Args:
        optimizer: an optimizer or a wrapper of one (None passes through).

    Returns:
        The innermost optimizer with step-hook state, else the outermost object unchanged.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
        >>> unwrap_optimizer(opt) is opt, unwrap_optimizer(None)
        (True, None)
    """
    current = optimizer
    for _ in range(_MAX_DEPTH):
        if current is None or _has_hook_state(current):
            return current
        inner = next((v for v in (getattr(current, a, None) for a in ("optimizer", "_optimizer"))
                      if v is not None and v is not current), None)
        if inner is None:
            return optimizer
        current = inner
    return optimizer




def hookable_optimizer(optimizer: Any) -> Any:
    """``unwrap_optimizer(optimizer)``, checked: None, or an optimizer whose step hooks watch can use.

    Raises:
        InputError: the object (after unwrapping) is not a ``torch.optim.Optimizer``.

    Example:
        >>> hookable_optimizer(None) is None
        True
    """
    optimizer = unwrap_optimizer(optimizer)
    if optimizer is not None and not hasattr(optimizer, "register_step_pre_hook"):
        raise InputError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def foreign_optimizer(optimizer: Any, *models: Any) -> bool:
    """True when ``optimizer`` holds parameters but none of the ``models``' trainable ones (the
    optimizer of another model, or master copies held by a mixed-precision wrapper).

    Example:
        >>> import torch
        >>> a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
        >>> foreign_optimizer(torch.optim.SGD(b.parameters(), lr=0.1), a), foreign_optimizer(None, a)
        (True, False)
    """
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return False
    held = {id(p) for g in groups for p in g.get("params", [])}
    own = {id(p) for m in models for p in m.parameters() if p.requires_grad}
    return bool(held and own) and not held & own


def left_out(optimizer: Any, model: Any) -> list[str]:
    """The model's trainable parameters (names) that the optimizer does not hold, when it holds
    some of them (none held: ``foreign_optimizer``).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> left_out(torch.optim.SGD(net[1].parameters(), lr=0.1), net)
        ['0.weight', '0.bias']
    """
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return []
    held = {id(p) for g in groups for p in g.get("params", [])}
    own = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in own if id(p) not in held]
    return missing if len(missing) < len(own) else []


def held_params(optimizer: Any, model: Any) -> set[int] | None:
    """Ids of the optimizer's parameters when it leaves some of the model's trainable ones out
    (``left_out``), else None: watch then measures updates of the held layers only (a layer the
    optimizer skips does not move, and would read as stalled).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        >>> len(held_params(torch.optim.SGD(net[1].parameters(), lr=0.1), net))
        2
        >>> held_params(torch.optim.SGD(net.parameters(), lr=0.1), net) is None
        True
    """
    if not left_out(optimizer, model):
        return None
    return {id(p) for g in optimizer.param_groups for p in g.get("params", [])}


def warn_foreign(optimizer: Any, *models: Any) -> None:
    """One warning line when every parameter of the model is frozen, when
    ``foreign_optimizer(optimizer, *models)``, or when trainable parameters of the model are left
    out of the optimizer (watch goes on)."""
    params = list(models[0].parameters()) if models and hasattr(models[0], "parameters") else []
    if params and not any(p.requires_grad for p in params):
        warnings.warn("graddoctor.watch: every parameter of the model is frozen (requires_grad=False): nothing "
                      "trains and no gradient will be recorded - unfreeze the layers to train "
                      "(model.requires_grad_(True) or per layer)", stacklevel=user_level())
    elif foreign_optimizer(optimizer, *models):
        warnings.warn("graddoctor.watch: the optimizer holds none of the model's trainable parameters (another "
                      "model's optimizer?): pass the one that trains this model; update sizes are not measured",
                      stacklevel=4)
    elif models and (missing := left_out(optimizer, models[0])):
        shown = ", ".join(missing[:4]) + (f", ... (+{len(missing) - 4})" if len(missing) > 4 else "")
        warnings.warn(f"graddoctor.watch: {len(missing)} trainable parameter(s) are not in the optimizer ({shown}): "
                      "unless another optimizer steps them (a GAN's other network: watch each network with its own "
                      "optimizer, gd.watch(model.G, opt_G)), they get gradients but never move, and "
                      "optimizer.zero_grad() does not clear them - set requires_grad=False on them if they are "
                      "frozen on purpose, or add them to the optimizer", stacklevel=user_level())


__all__ = ["foreign_optimizer", "held_params", "hookable_optimizer", "left_out", "unwrap_optimizer", "warn_foreign"]
