"""What autofix acts on, what it plans and how it applies the plan in place.

Trigger (``triggering``): an **error** finding of the training rules with a gradient-flow cause
(``GRADIENT_FLOW_CODES``: the severity policy makes a cause an error only when the run does not
learn) or a non-finite loss/gradient. ``clip-too-tight`` and ``post-ln-no-warmup`` are left out:
the clip is a call in the user's loop and the warm-up a scheduler, neither changeable from the
outside (the report still names them).

Plan (``plan_fix``): the planner of ``repair`` (``fix/planner.py``) on the findings of the window,
kept to the remedies autofix can apply in place (``IN_PLACE``), and to the user's list when
``autofix=[ids]``; an exploding or non-finite run also gets ``lower-lr`` (the usual cause is the
learning rate) unless the plan re-draws the weights (then the init was the cause), and its
weights are rolled back to the snapshot taken at attach time (a blown-up run's weights are the
wreck, not a warm start).

Apply (``apply_fix``): each remedy through the registry with ``inplace=True`` (module swaps by
``setattr`` on the parent, re-draws with ``normal_``/``copy_`` under ``no_grad``, wrappers that
replace child modules), clipping as an optimizer step pre-hook, ``lower-lr`` on the param groups.

Per remedy: activation swaps and skips keep the weights (warm-start safe); re-inits re-draw them
(their optimizer state is reset); a rollback restores every weight from the attach snapshot
(optimizer state reset).

Example:
    >>> from graddoctor.report import Finding
    >>> fs = [Finding("vanishing-gradient", "error", "v", ["0"]), Finding("dead-relu", "warning", "d")]
    >>> [f.code for f in triggering(fs)]
    ['vanishing-gradient']
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graddoctor.diagnose.thresholds import GRADIENT_FLOW_CODES
from graddoctor.errors import InputError
from graddoctor.fix import remedies as registry
from graddoctor.fix.planner import PlanStep, plan
from graddoctor.fix.remedies.activation import SWAPS
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.init import SCHEMES
from graddoctor.report import Finding

#: codes whose error findings make autofix act
TRIGGERS = tuple(c for c in (*GRADIENT_FLOW_CODES, "non-finite")
                 if c not in ("clip-too-tight", "post-ln-no-warmup"))
#: remedies that act on the optimizer only (they also apply where surgery is refused)
OPTIMIZER_LEVEL = ("clip-norm", "clip-value", "clip-agc", "lower-lr")
#: remedies autofix applies in place, in any order the planner gives
IN_PLACE = (*SWAPS, *SCHEMES, "batchnorm", "groupnorm", "layernorm", "residual", "rezero",
            "train-mode", *OPTIMIZER_LEVEL)
#: the learning rate is divided by this on an exploding or non-finite run
LR_FACTOR = 10.0
_BLOWUP = ("exploding-gradient", "non-finite")


def check_allowed(autofix: Any) -> tuple[str, ...] | None:
    """``autofix=True`` -> None (every in-place remedy); a list of ids -> those ids (validated).

    Raises:
        InputError: not True and not a list of remedy ids autofix can apply in place.

    Example:
        >>> check_allowed(True) is None, check_allowed(["relu", "he-init"])
        (True, ('relu', 'he-init'))
    """
    if autofix is True:
        return None
    if isinstance(autofix, (list, tuple)) and autofix and all(isinstance(r, str) for r in autofix):
        bad = [r for r in autofix if r not in IN_PLACE]
        if bad:
            raise InputError(f"autofix: {', '.join(bad)} cannot be applied in place during training; "
                             f"choose among {', '.join(IN_PLACE)}")
        return tuple(autofix)
    raise InputError(f"autofix must be True or a list of remedy ids, got {autofix!r} - e.g. "
                     "autofix=True or autofix=['relu', 'he-init']")


def triggering(findings: list[Finding]) -> list[Finding]:
    """The findings that make autofix act: errors with a gradient-flow cause, or non-finite."""
    return [f for f in findings if f.severity == "error" and f.code in TRIGGERS]


def plan_fix(findings: list[Finding], model: nn.Module, example_inputs: Any, optimizer: Any,
             allowed: tuple[str, ...] | None, surgery: bool, blowup: bool = False,
             retry: bool = False) -> list[PlanStep]:
    """The planner's steps that autofix can apply now (see the module docstring).

    Args:
        findings: every finding of the judged window (the planner reads warnings too).
        model: the live model.
        example_inputs: a batch (structural remedies need one), or None.
        optimizer: the live optimizer.
        allowed: the user's remedy ids (None: all of ``IN_PLACE``).
        surgery: module surgery is allowed (``surgery.refusal`` said nothing).
        blowup: the run blew up (or a blow-up fix did not help): ``lower-lr`` is planned, unless
            the plan re-draws the weights on a first round (then the init is the cause).
        retry: a blow-up fix did not help: ``lower-lr`` whatever else is planned.
    """
    steps = plan(findings, model, example_inputs, optimizer)
    codes = {f.code for f in triggering(findings)}
    redraw = any(s.remedy in SCHEMES for s in steps)
    if redraw and not retry:  # the weights are re-drawn: the init was the cause, not the rate
        steps = [s for s in steps if s.remedy != "lower-lr"]
    elif (blowup or codes & set(_BLOWUP)) and not any(s.remedy == "lower-lr" for s in steps):
        steps.append(PlanStep("lower-lr", "the run blew up: the learning rate is the usual cause",
                              sorted(codes)))
    keep = [s for s in steps if s.remedy in IN_PLACE and (allowed is None or s.remedy in allowed)
            and (surgery or s.remedy in OPTIMIZER_LEVEL)]
    if example_inputs is None:
        keep = [s for s in keep if not registry.get(s.remedy).needs_inputs]
    return keep


def apply_fix(steps: list[PlanStep], model: nn.Module, optimizer: torch.optim.Optimizer,
              example_inputs: Any, findings: list[Finding], seed: int = 0
              ) -> tuple[list[Change], list[torch.Tensor]]:
    """Apply ``steps`` to ``model`` and ``optimizer`` in place.

    Returns:
        ``(changes, reset)``: the changes made, and the parameters whose weights were re-drawn
        (their optimizer state must be reset).
    """
    changes: list[Change] = []
    reset: list[torch.Tensor] = []
    with torch.random.fork_rng(devices=[]):  # the user's RNG stream is left as it was
        torch.manual_seed(seed)
        for step in steps:
            if step.remedy == "lower-lr":
                changes.append(lower_lr(optimizer, LR_FACTOR, step.reason))
                continue
            _, change = registry.apply(step.remedy, model, example_inputs, inplace=True,
                                       optimizer=optimizer,
                                       findings=[f for f in findings if f.code in step.codes],
                                       **step.options)
            change.mmap = None
            change.why = f"{step.reason} -> {change.why}"
            changes.append(change)
            if registry.get(step.remedy).family == "init":
                mods = dict(model.named_modules())
                reset += [p for n in change.modules if n in mods for p in mods[n].parameters()]
    return changes, reset


def lower_lr(optimizer: torch.optim.Optimizer, factor: float, reason: str) -> Change:
    """Divide every param group's learning rate by ``factor`` (a tensor rate in place).

    Example:
        >>> opt = torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=1.0)
        >>> lower_lr(opt, 10.0, "blew up").details["lr"], opt.param_groups[0]["lr"]
        ([0.1], 0.1)
    """
    for g in optimizer.param_groups:
        if isinstance(g["lr"], torch.Tensor):
            g["lr"].div_(factor)
        else:
            g["lr"] = g["lr"] / factor
    lrs = [float(g["lr"]) for g in optimizer.param_groups]
    return Change("lower-lr", [], f"{reason} -> learning rate divided by {factor:g}", "applied",
                  {"factor": factor, "lr": lrs})


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter and buffer, by name (the rollback point)."""
    return {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}


def rollback(model: nn.Module, snap: dict[str, torch.Tensor]) -> Change:
    """Restore the weights that still exist with the same shape from ``snap`` (in place).

    Example:
        >>> net = nn.Linear(2, 1); snap = snapshot(net)
        >>> with torch.no_grad(): _ = net.weight.fill_(float("nan"))
        >>> rollback(net, snap).remedy, bool(torch.isfinite(net.weight).all())
        ('rollback', True)
    """
    restored = []
    with torch.no_grad():
        for k, v in model.state_dict(keep_vars=True).items():
            old = snap.get(k)
            if old is not None and old.shape == v.shape:
                v.copy_(old)
                restored.append(k)
    return Change("rollback", sorted({k.rpartition(".")[0] for k in restored}),
                  "the run blew up: weights restored from the snapshot taken when watch attached",
                  "applied", {"tensors": len(restored)})


def blew_up(findings: list[Finding]) -> bool:
    """An exploding or non-finite error among ``findings`` (the weights are a wreck)."""
    return any(f.code in _BLOWUP for f in triggering(findings))


__all__ = ["IN_PLACE", "LR_FACTOR", "OPTIMIZER_LEVEL", "TRIGGERS", "apply_fix", "blew_up",
           "check_allowed", "lower_lr", "plan_fix", "rollback", "snapshot", "triggering"]
