"""The learning rate in ``repair``: run ``gd.lr_find`` on the repaired model and set the optimizer's LR.

Opt-in (``repair(..., train_loader=..., tune_lr=True)``, and by default with
``keep_architecture=True``): where a finding lists the ``lr-find`` remedy (or the plan holds
it, or a keep-architecture repair asks for it), the range test runs on the *repaired* model
and every param group of the optimizer gets the suggestion. The user's optimizer is used
when it already holds the repaired model's parameters (``inplace=True``); otherwise one of
the same type is built over the repaired model, group by group with the same
hyper-parameters (``optimizer_for``). Without an optimizer the sweep uses Adam (lr 1e-3) and
only the learning rate is returned.

Example:
    >>> from graddoctor.report import Finding
    >>> calls_for_lr_find([Finding("loss-plateau", "warning", "flat", remedies=["lr-find"])])
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change
from graddoctor.lrfind import LRFindResult, lr_find
from graddoctor.report import Finding

REMEDY = "lr-find"


def calls_for_lr_find(findings: Iterable[Finding], remedies: Iterable[str] = ()) -> bool:
    """True when a finding lists the ``lr-find`` remedy or ``remedies`` (a plan's ids) holds it.

    Example:
        >>> calls_for_lr_find([], ["he-init"]), calls_for_lr_find([], ["lr-find"])
        (False, True)
    """
    return REMEDY in remedies or any(REMEDY in f.remedies for f in findings)


def optimizer_for(old: nn.Module, new: nn.Module, optimizer: torch.optim.Optimizer
                  ) -> torch.optim.Optimizer:
    """``optimizer`` when it holds ``new``'s parameters; else one of its type over ``new``.

    Each param group keeps its hyper-parameters; its parameters are swapped for the ones at
    the same place in ``new`` (``new`` is ``old`` or a deep copy of it, so
    ``named_parameters`` line up). Optimizer state (momentum, Adam moments) is not carried
    over: it belongs to the old weights.

    Raises:
        InputError: the optimizer holds parameters of neither model.

    Example:
        >>> import copy
        >>> net = nn.Linear(2, 2); twin = copy.deepcopy(net)
        >>> opt = optimizer_for(net, twin, torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9))
        >>> opt.param_groups[0]["params"][0] is twin.weight, opt.param_groups[0]["momentum"]
        (True, 0.9)
    """
    new_ids = {id(p) for p in new.parameters()}
    held = [p for g in optimizer.param_groups for p in g["params"]]
    if all(id(p) in new_ids for p in held):
        return optimizer
    twin = {id(p): q for p, q in zip(old.parameters(), new.parameters(), strict=False)}
    lost = [p for p in held if id(p) not in twin]
    if lost:
        raise InputError(f"the optimizer holds {len(lost)} parameters that are not the model's; "
                         "build it over model.parameters()")
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [twin[id(p)] for p in g["params"]]}
              for g in optimizer.param_groups]
    return type(optimizer)(groups, **optimizer.defaults)


def tune_lr(model: nn.Module, optimizer: torch.optim.Optimizer | None, train_loader: Iterable,
            loss_fn: Any = None, method: str | None = None, **options: Any
            ) -> tuple[LRFindResult, Change]:
    """Run ``lr_find`` on ``model`` and set every param group of ``optimizer`` to the suggestion.

    Args:
        model: the (repaired) model.
        optimizer: an optimizer over ``model``'s parameters, or None (Adam, lr 1e-3, for the sweep).
        train_loader: batches, as for ``lr_find``.
        loss_fn: as for ``lr_find``.
        method: the suggestion rule ("minimum", "steepest", "valley"; None: ``lr_find``'s default).
        **options: passed to ``lr_find`` (``start_lr``, ``end_lr``, ``num_steps``, ...).

    Returns:
        ``(result, change)``: the range test, and an "applied" change (the LR was set) or
        "advice" (no suggestion: the findings of the range test say why).

    Raises:
        InputError: a bad argument of ``lr_find``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(64, 4, generator=g); y = (x[:, 0] > 0).long()
        >>> net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
        >>> res, change = tune_lr(net, opt, [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)],
        ...                       start_lr=1e-4, num_steps=30)
        >>> opt.param_groups[0]["lr"] == res.suggestion, change.kind
        (True, 'applied')
    """
    opt = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=1e-3)
    result = lr_find(model, opt, train_loader, loss_fn, **options)
    if method is not None and result.suggestion is not None:
        result.suggestion, result.method = result.suggestions.get(method), method
    details: dict[str, Any] = {"method": result.method, "suggestions": result.suggestions,
                               "steps": len(result.lrs), "optimizer": type(opt).__name__}
    if result.suggestion is None:
        why = "the LR range test found no learning rate to suggest" + (
            f": {result.findings[0].message}" if result.findings else " (curve too short)")
        return result, Change(REMEDY, [], why, "advice", details)
    for group in opt.param_groups:
        group["lr"] = result.suggestion
    details["lr"] = result.suggestion
    why = (f"LR range test on the repaired model ({len(result.lrs)} steps, {result.method} rule): "
           f"learning rate {result.suggestion:.2g}"
           + (f" set on every param group of the {type(opt).__name__} optimizer" if optimizer is not None
              else f" (for {type(opt).__name__}; pass optimizer= to have it set)"))
    return result, Change(REMEDY, [], why, "applied" if optimizer is not None else "advice", details)


__all__ = ["REMEDY", "calls_for_lr_find", "optimizer_for", "tune_lr"]
