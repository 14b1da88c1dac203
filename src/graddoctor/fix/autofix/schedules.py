"""The user's LR schedulers follow a rate autofix lowered.

A scheduler that computes its rate from its own base rates (``LambdaLR``, ``OneCycleLR``,
``CyclicLR``, the closed forms and restarts of the others) would write the old rate back at its
next ``step()``: the lowered rate would last one step, silently. ``scale_schedules`` scales
those base rates with the groups' rates: every ``LRScheduler`` that holds the optimizer (found by
``gc.get_referrers``: the optimizer does not know its schedulers), its ``base_lrs`` and
``max_lrs``, and the ``initial_lr`` / ``max_lr`` / ``min_lr`` keys schedulers keep in the param
groups. Chainable schedulers (``StepLR``, ``ExponentialLR``, ...) scale the group's rate and
follow without it.

Example:
    >>> import torch
    >>> p = torch.nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.SGD([p], lr=1.0)
    >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    >>> opt.param_groups[0]["lr"] /= 10; scale_schedules(opt, 0.1)
    1
    >>> p.grad = torch.ones(1); opt.step(); sched.step(); opt.param_groups[0]["lr"]
    0.1
"""

from __future__ import annotations

import gc

import torch

#: the rate keys schedulers keep in a param group
GROUP_KEYS = ("initial_lr", "max_lr", "min_lr")
#: the per-group rate lists a scheduler keeps
SCHEDULER_KEYS = ("base_lrs", "max_lrs")


#: attributes through which an optimizer wrapper holds the optimizer (Accelerate's
#: ``AcceleratedOptimizer.optimizer``, Lightning's ``LightningOptimizer._optimizer``)
WRAPPER_ATTRS = ("optimizer", "_optimizer")
_KINDS = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _owners(target: object) -> list[object]:
    """The objects that refer to ``target``: directly, or through their materialised ``__dict__``."""
    out: list[object] = []
    for r in gc.get_referrers(target):
        if isinstance(r, dict):
            out += [o for o in gc.get_referrers(r) if getattr(o, "__dict__", None) is r]
        else:
            out.append(r)
    return out


def schedulers(optimizer: torch.optim.Optimizer) -> list[object]:
    """The LR schedulers that hold ``optimizer``, or a wrapper of it (the Hugging Face Trainer's
    scheduler holds Accelerate's ``AcceleratedOptimizer``): the referrer is the scheduler
    itself, or its ``__dict__`` once that has been materialised (``state_dict()``, ``vars()``,
    pickling).

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
        >>> _ = sched.state_dict(); [type(s).__name__ for s in schedulers(opt)]
        ['LambdaLR']
    """
    owners = _owners(optimizer)
    wrappers = [o for o in owners if not isinstance(o, _KINDS)
                and any(getattr(o, a, None) is optimizer for a in WRAPPER_ATTRS if a in getattr(o, "__dict__", {}))]
    for w in wrappers:
        owners += _owners(w)
    found: list[object] = []
    for o in owners:
        if isinstance(o, _KINDS) and not any(o is f for f in found):
            found.append(o)
    return found


def scale_schedules(optimizer: torch.optim.Optimizer, k: float) -> int:
    """Multiply the base rates of ``optimizer``'s schedulers and its groups' scheduler keys by
    ``k``; return how many schedulers were scaled."""
    for g in optimizer.param_groups:
        for key in GROUP_KEYS:
            if isinstance(g.get(key), (int, float)):
                g[key] = g[key] * k
    found = schedulers(optimizer)
    for s in found:
        for key in SCHEDULER_KEYS:
            rates = getattr(s, key, None)
            if isinstance(rates, list) and all(isinstance(r, (int, float)) for r in rates):
                setattr(s, key, [r * k for r in rates])
    return len(found)


__all__ = ["GROUP_KEYS", "SCHEDULER_KEYS", "WRAPPER_ATTRS", "scale_schedules", "schedulers"]
