"""In-place surgery helpers: the optimizer rebound to the model's parameters, and when to refuse.

``rebind_optimizer`` keeps the user's optimizer object: in each param group the parameters that
left the model are dropped (their state with them), parameters new since ``before`` join the group
of their nearest neighbour (the group that holds another parameter of the same parent module,
else the first group; a new scalar or vector, e.g. a ReZero gain, joins the group that holds only
such parameters when the groups split that way: the usual no-weight-decay group), and the state
of re-initialised parameters is reset. A group that held its parameters in the model's order
keeps that order (new ones take their place in it), so that a ``state_dict`` saved after a fix
loads into a fresh optimizer built the same way on the repaired model. Every other
hyper-parameter of every group is kept. ``refusal`` says why module surgery is unsafe (DDP/FSDP,
``torch.compile``, TorchScript); optimizer-level remedies still apply there.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> before = {id(p) for p in net.parameters()}
    >>> net[1] = nn.Linear(2, 1)  # a new module replaces an old one
    >>> rebind_optimizer(opt, net, before)
    {'added': 2, 'dropped': 2, 'reset': 0}
    >>> {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    True
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from graddoctor.measure.monitor.optimizers import foreign_optimizer, left_out
from graddoctor.stack import user_level


def rebind_optimizer(optimizer: torch.optim.Optimizer, model: nn.Module, before: set[int],
                     reset: Iterable[torch.Tensor] = ()) -> dict[str, int]:
    """Rebind ``optimizer``'s param groups to ``model`` in place after module surgery.

    Args:
        optimizer: the user's optimizer (same object afterwards).
        model: the model after the surgery.
        before: ``id`` of every parameter the model held before the surgery (a parameter not in
            it is new and joins a group; one held before but not in the optimizer stays out).
        reset: parameters whose optimizer state is dropped (re-initialised weights).

    Returns:
        ``{"added", "dropped", "reset"}``: how many parameters joined, left, had their state reset.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.Adam(net.parameters())
        >>> net(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> rebind_optimizer(opt, net, {id(p) for p in net.parameters()}, reset=[net.weight])
        {'added': 0, 'dropped': 0, 'reset': 1}
        >>> net.weight in opt.state, net.bias in opt.state
        (False, True)
    """
    named = list(model.named_parameters())
    live = {id(p) for _, p in named}
    index = {id(p): i for i, (_, p) in enumerate(named)}
    added = dropped = 0
    owner: dict[int, int] = {}  # param id -> group index
    for gi, group in enumerate(optimizer.param_groups):
        kept = [p for p in group["params"] if id(p) in live]
        for p in group["params"]:
            if id(p) not in live:
                optimizer.state.pop(p, None)
                dropped += 1
        group["params"] = kept
        owner.update({id(p): gi for p in kept})
    in_order = [_ascending([index[id(p)] for p in g["params"]]) for g in optimizer.param_groups]
    # the group of 1-d parameters only (the usual "no weight decay" group for biases and norm
    # gains), if groups split by dimension
    flat = [gi for gi, g in enumerate(optimizer.param_groups) if g["params"] and all(q.dim() < 2 for q in g["params"])]
    flat_group = flat[0] if flat and len(optimizer.param_groups) > 1 else None
    parent_group: dict[str, int] = {}
    for name, p in named:
        if id(p) in owner:
            parent_group.setdefault(name.rpartition(".")[0], owner[id(p)])
    for name, p in named:
        if id(p) in before or id(p) in owner or not p.requires_grad:
            continue
        gi = parent_group.get(name.rpartition(".")[0], 0)
        if p.dim() < 2 and flat_group is not None:  # a gain or bias joins the biases' group
            gi = flat_group
        optimizer.param_groups[gi]["params"].append(p)
        owner[id(p)] = gi
        added += 1
    for gi, group in enumerate(optimizer.param_groups):  # a group held in the model's order keeps
        if in_order[gi]:  # it: a resumed run's fresh optimizer on model.parameters() lines up
            group["params"] = sorted(group["params"], key=lambda p: index[id(p)])
    n_reset = 0
    for p in reset:
        if optimizer.state.pop(p, None) is not None:
            n_reset += 1
    return {"added": added, "dropped": dropped, "reset": n_reset}


def _ascending(xs: list[int]) -> bool:
    return all(a < b for a, b in zip(xs, xs[1:]))


def frozen_layers(model: nn.Module) -> list[str]:
    """The Linear/conv/recurrent layers whose parameters are all frozen (``requires_grad``
    False), when they hold more weights than the trainable ones (a frozen backbone under a head,
    a frozen base under adapters; a model frozen whole, or a frozen input layer under a trainable
    stack, gives none).

    Example:
        >>> net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> _ = net[0].requires_grad_(False)
        >>> frozen_layers(net), frozen_layers(net.requires_grad_(False))
        (['0'], [])
    """
    kinds = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)
    layers = [(n, list(m.parameters(recurse=False))) for n, m in model.named_modules() if isinstance(m, kinds)]
    frozen = [(n, ps) for n, ps in layers if ps and not any(p.requires_grad for p in ps)]
    held = sum(p.numel() for _, ps in frozen for p in ps)
    trained = sum(p.numel() for _, ps in layers for p in ps if p.requires_grad)
    return [n for n, _ in frozen] if trained and held > trained else []


def off_when_distributed(world_size: int) -> bool:
    """Autofix is off in a multi-process run, with one warning: a fix taken on rank 0 alone (its
    records live there) left the DDP replicas drifting apart, the lowered rate on one rank only.

    Example:
        >>> off_when_distributed(1)
        False
    """
    if world_size <= 1:
        return False
    warnings.warn(f"graddoctor.autofix: off in this {world_size}-process run (every rank would have to take the same fix "
                  "at the same step, and the records live on rank 0): watch records as usual; repair between "
                  "runs (gd.repair)", stacklevel=user_level())
    return True


def refusal(model: nn.Module, optimizer: Any = None) -> str | None:
    """Why module surgery on ``model`` is unsafe (one line), or None when it is safe. Surgery
    is also refused where frozen weight layers hold most of the weights next to trainable ones (``frozen_layers``:
    a frozen default-init backbone under a trainable head read as poor-init, and autofix re-drew
    the head and swapped the backbone's ReLUs: held-out accuracy fell on 3 of 3 seeds), and where
    ``optimizer`` leaves out some (or all: another model's optimizer, where a fix's new
    parameters joined that optimizer) of the model's trainable parameters: a re-drawn layer it does
    not train would stay random; and on a model with no trainable parameters at all (autofix
    warns once at attach instead of watching a run it cannot change).

    Example:
        >>> refusal(nn.Linear(2, 2)) is None
        True
        >>> refusal(torch.jit.script(nn.Linear(2, 2)))
        'a TorchScript module (its code is compiled): only optimizer-level remedies apply'
    """
    from graddoctor.measure import distributed as dist_

    if isinstance(model, torch.jit.ScriptModule):
        return "a TorchScript module (its code is compiled): only optimizer-level remedies apply"
    if hasattr(model, "_orig_mod"):
        return "a torch.compile'd module (surgery would invalidate its graph): only optimizer-level remedies apply"
    if isinstance(model, nn.DataParallel):
        return ("a DataParallel model (surgery through the wrapper is not supported; repair the module "
                "before wrapping it): only optimizer-level remedies apply")
    if isinstance(model, nn.parallel.DistributedDataParallel) or dist_.mode(model) != "single":
        return ("a distributed (DDP/FSDP) model (every rank would have to change in step): only "
                "optimizer-level remedies apply")
    if not any(p.requires_grad for p in model.parameters()):
        return "a model with no trainable parameters (all frozen): there is nothing to repair"
    if frozen := frozen_layers(model):
        return (f"a model whose {len(frozen)} frozen weight layers ({frozen[0]}{', ...' if len(frozen) > 1 else ''}) "
                "hold most of its weights (a pretrained backbone, a base under adapters): that part is yours "
                "to keep; only optimizer-level remedies apply")
    if optimizer is not None and foreign_optimizer(optimizer, model):
        return ("a model none of whose trainable parameters are in the optimizer (another model's optimizer, "
                "or the master copies of a mixed-precision wrapper): a layer rebuilt there would never train; "
                "only optimizer-level remedies apply")
    if optimizer is not None and (missing := left_out(optimizer, model)):
        return (f"a model whose optimizer leaves out {len(missing)} of its trainable parameters "
                f"({missing[0]}{', ...' if len(missing) > 1 else ''}): a layer re-drawn or rebuilt there "
                "would never train; only optimizer-level remedies apply")
    return None


#: the autofix watcher attached to each model (one repairs it at a time)
_FIXING: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()


def claim(watcher: Any) -> bool:
    """Make ``watcher`` (an ``AutofixWatcher``) its model's autofix watcher; False, with one
    warning and autofix off for it, when another attached one already is: two would both re-draw
    and rebind the same model. The claim ends with ``release``."""
    other = _FIXING.get(watcher.root)
    if other is not None and other is not watcher and other.attached:
        watcher.autofix_failed = "another autofix watcher is attached to this model"
        warnings.warn("graddoctor.autofix: another gd.watch(..., autofix=True) is attached to this model, so "
                      "this one only watches - detach the first to autofix with this one", stacklevel=user_level())
        return False
    _FIXING[watcher.root] = watcher
    return True


def release(watcher: Any) -> None:
    """End ``watcher``'s claim on its model (at detach)."""
    if _FIXING.get(watcher.root) is watcher:
        del _FIXING[watcher.root]


__all__ = ["claim", "frozen_layers", "off_when_distributed", "rebind_optimizer", "refusal", "release"]
