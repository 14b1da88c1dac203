"""What autofix acts on, what it plans and how it applies the plan in place.

Trigger (``triggering``): an **error** finding of the training rules with a gradient-flow cause
(``GRADIENT_FLOW_CODES``: the severity policy makes a cause an error only when the run does not
learn) or a non-finite loss/gradient. ``clip-too-tight`` is left out: the clip is a call in the
user's loop, not changeable from the outside (the report still names it). ``batchnorm-eval-mode``
triggers only as a **definite fault**, at any severity (``definite``: BatchNorm layers in eval
mode that still hold their initial running statistics, mean 0 and variance 1, so they
normalise nothing); BatchNorms frozen with the data's statistics are a deliberate freeze (a
fine-tune whose loss has already settled looks "stuck" but is not broken) and are left alone.
An **init fault** (``initaudit.init_fault``: the ``poor-init`` audit of the weights at attach)
triggers at the first check. A **persistent slow cause** also triggers: a strong dead-ReLU or
saturation finding at two checks in a row while the loss has fallen little (``judge.strong``,
``judge.slow``; the watcher applies that rule, and lets a dead-ReLU or saturation error act only
when it is strong).

Plan (``plan_fix``): the planner of ``repair`` (``fix/planner.py``) on the findings of the window,
kept to the remedies autofix can apply in place (``IN_PLACE``), and to the user's list when
``autofix=[ids]``; an exploding or non-finite run also gets ``lower-lr`` (the usual cause is the
learning rate) unless the plan re-draws weights found off scale (a ``poor-init`` finding) or puts
BatchNorms back in training mode (then the init or the norms were the cause), and its
weights are rolled back to the snapshot taken at attach time (a blown-up run's weights are the
wreck, not a warm start).

Apply (``apply_fix``): each remedy through the registry with ``inplace=True`` (module swaps by
``setattr`` on the parent, re-draws with ``normal_``/``copy_`` under ``no_grad``, wrappers that
replace child modules), clipping as an optimizer step pre-hook, ``lower-lr`` on the param groups
(/10, or /100 when the window's steps moved the weights by their own norm: ``lr_divisor``).

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

from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from graddoctor.diagnose.thresholds import GRADIENT_FLOW_CODES
from graddoctor.diagnose.training.instability import median_update_ratios
from graddoctor.errors import InputError
from graddoctor.fix import remedies as registry
from graddoctor.fix.autofix.schedules import scale_schedules
from graddoctor.fix.planner import PHASES, PlanStep, facts, plan
from graddoctor.fix.remedies.activation import SWAPS
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.init import SCHEMES
from graddoctor.fix.remedies.norm_gain import zero_gains
from graddoctor.fix.remedies.warmup import LinearWarmup, install
from graddoctor.measure.monitor.records import initial_stats
from graddoctor.report import Finding

#: codes whose error findings make autofix act
TRIGGERS = tuple(c for c in (*GRADIENT_FLOW_CODES, "non-finite") if c not in ("clip-too-tight", "batchnorm-eval-mode"))
#: remedies that act on the optimizer only (they also apply where surgery is refused)
OPTIMIZER_LEVEL = ("clip-norm", "clip-value", "clip-agc", "lower-lr", "warmup")
#: remedies autofix applies in place, in any order the planner gives
IN_PLACE = (*SWAPS, *SCHEMES, "edge-of-chaos-init", "forget-bias", "norm-gain", "batchnorm", "groupnorm", "layernorm",
            "residual", "rezero", "train-mode", *OPTIMIZER_LEVEL)
#: remedies after which the weights restart from the attach snapshot: a blown-up run's weights
#: are a wreck, a stuck post-LN net's have collapsed (its warm-up must start from the init)
RESTART = ("warmup",)
#: the learning rate is divided by this on an exploding or non-finite run
LR_FACTOR = 10.0
#: ... and by this when the steps were larger than the weights themselves (a median update
#: ratio of at least ``HUGE_STEP``: the rate is two orders past the ~1e-2 a stable run shows)
HUGE_LR_FACTOR = 100.0
HUGE_STEP = 1.0
#: the peak rate of a post-LN restart with warm-up is the user's divided by this (Xiong et al.
#: 2020: post-LN is the LR-sensitive variant). Seed 0 of the autofix benchmark: warm-up alone
#: left a-tf-post8 at 0.624 and b-ttf-post6-d64 at 0.103 (references 0.908, 0.900); warm-up
#: to a third of the rate reached 0.891 and 0.905
WARMUP_LR_FACTOR = 3.0
#: length of autofix's warm-up ramp, in optimizer steps
RAMP_STEPS = 60
_BLOWUP = ("exploding-gradient", "non-finite")
#: a swap to ReLU in place on a plain stack of this many layers or more also gets ``rezero``
#: (the planner's ``SKIP_DEPTH`` is 12, for a retrain from scratch). Autofix benchmark, 5
#: seeds: a-mlp10-sigmoid-vanish (10 layers, SGD 0.05 with momentum) swapped to relu + He
#: oscillated and reached 0.10-0.74 (0/5 fixed); with rezero 0.905-0.928 at N (5/5). The 4-
#: and 6-layer swaps repair without a skip
SWAP_SKIP_DEPTH = 8


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


def definite(findings: list[Finding], model: nn.Module) -> list[Finding]:
    """``batchnorm-eval-mode`` findings (any severity) whose layers all hold their initial running
    statistics (mean 0, variance 1): a BatchNorm that normalises nothing, never a deliberate freeze.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).eval()
        >>> f = Finding("batchnorm-eval-mode", "warning", "eval", ["1"])
        >>> len(definite([f], net))
        1
        >>> _ = net.train()(torch.randn(8, 2)); len(definite([f], net.eval()))
        0
    """
    mods = dict(model.named_modules())
    out = []
    for f in findings:
        if f.code != "batchnorm-eval-mode":
            continue
        bns = [mods.get(n) for n in f.layers]
        if bns and all(initial_stats(m) for m in bns):
            out.append(f)
    return out


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
            the plan re-draws weights (or resets norm gains) a ``poor-init`` finding says are off
            scale (too large: not ``_too_small``) or switches
            BatchNorms back to training mode on a first round (then the init or the norms are
            the cause). A re-draw the planner adds for a blow-up alone (orthogonal recurrent
            weights for an exploding RNN) does not stand in for the rate: autofix benchmark, 5
            seeds, b-gru-lr5x and b-gru-lr10x (SGD 5-10x): re-draw first, rate at the retry 9/10
            fixed at 1.2-1.9x; both at once 10/10 at 0.8-1.7x.
        retry: a blow-up fix did not help: ``lower-lr`` whatever else is planned.
    """
    codes = {f.code for f in triggering(findings)}
    findings = with_zero_gains(findings, model) if surgery else findings
    steps = plan(findings, model, example_inputs, optimizer) if surgery else _optimizer_plan(codes)
    steps = _deep_swap_skip(steps, model, example_inputs) if surgery and example_inputs is not None else steps
    # the weights are re-drawn for an init found off scale (the init was the cause) or BatchNorms
    # that normalised nothing are switched back on (an un-normalised net blew up): not the rate
    init_cause = any(f.code == "poor-init" and not _too_small(f) for f in findings)
    cause_fixed = any((s.remedy in (*SCHEMES, "edge-of-chaos-init", "norm-gain") and init_cause)
                      or s.remedy == "train-mode" for s in steps)
    if cause_fixed and not retry:
        steps = [s for s in steps if s.remedy != "lower-lr"]
    elif (blowup or codes & set(_BLOWUP)) and not any(s.remedy == "lower-lr" for s in steps):
        steps.append(PlanStep("lower-lr", "the run blew up: the learning rate is the usual cause",
                              sorted(codes)))
    if allowed is not None and "edge-of-chaos-init" not in allowed:  # the planner's choice for a plain
        steps = [replace(s, remedy="xavier-init") if s.remedy == "edge-of-chaos-init" else s  # tanh MLP:
                 for s in steps]  # the user's list names Glorot's
    keep = [s for s in steps if s.remedy in IN_PLACE and (allowed is None or s.remedy in allowed)
            and (surgery or s.remedy in OPTIMIZER_LEVEL)]
    if example_inputs is None:
        keep = [s for s in keep if not registry.get(s.remedy).needs_inputs]
    return keep


def _too_small(finding: Finding) -> bool:
    """A ``poor-init`` finding of weights that shrink the signal (evidence ``direction``, its chain
    or its single layers; ``chain_orders`` < 0 where no direction is recorded) or of norm gains near
    zero: weights too small cannot blow a run up, so their re-draw does not stand in for a lower
    rate. A default-init ReLU MLP (-1.2 orders) at SGD 3.0 with momentum blew up, was re-drawn at
    its rate and went on moving its weights by 1260% of their norm per step.

    Example:
        >>> _too_small(Finding("poor-init", "warning", "m", [], {"chain_orders": -1.17}))
        True
        >>> _too_small(Finding("poor-init", "warning", "m", [], {"chain_orders": 0, "direction": "shrinks"}))
        True
        >>> _too_small(Finding("poor-init", "warning", "m", [], {"chain_orders": 2.6, "direction": "grows"}))
        False
    """
    ev = finding.evidence
    if ev.get("direction") in ("shrinks", "grows"):
        return ev["direction"] == "shrinks"
    v = ev.get("chain_orders")
    return (isinstance(v, (int, float)) and v < 0) or finding.remedies == ["norm-gain"]


def with_zero_gains(findings: list[Finding], model: nn.Module) -> list[Finding]:
    """The vanishing-gradient errors among ``findings`` with the live model's normalisation gains
    that are exactly zero named in their evidence (``zero_params``, as the init probe names them),
    so the planner's ``norm-gain`` (gain 1, weights kept) is the fix. A trial: a SegFormer with
    every LayerNorm gain zeroed was a dead body from step 1; its gains were still exactly 0 at the
    step-40 check, and autofix found "nothing applicable in place". The stall, plateau and dead-ReLU
    findings the cut explains (units behind a zero gain see only zeros) are left out: they would
    plan swaps and re-draws.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
        >>> _ = nn.init.zeros_(net[1].weight)
        >>> with_zero_gains([Finding("vanishing-gradient", "error", "v")], net)[0].evidence["zero_params"]
        ['1.weight']
    """
    zero = zero_gains(model) if any(f.code == "vanishing-gradient" and f.severity == "error" for f in findings) else []
    if not zero:
        return findings
    return [replace(f, evidence={**f.evidence, "zero_params": [f"{n}.weight" for n in zero]})
            if f.code == "vanishing-gradient" and f.severity == "error" else f for f in findings
            if f.code not in ("stalled-layers", "loss-plateau", "dead-relu")]  # the cut explains them


def _deep_swap_skip(steps: list[PlanStep], model: nn.Module, example_inputs: Any) -> list[PlanStep]:
    """A swap to ReLU on a plain stack of >= ``SWAP_SKIP_DEPTH`` layers also gets ``rezero``, whatever
    triggered the swap (the planner adds the skip for a vanishing signal only; autofix also swaps
    on a saturated, exploding tanh stack, which then trains as a deep plain ReLU stack: the
    planner's measured rows, 12-20 layers, are such swaps)."""
    if not any(s.remedy in SWAPS for s in steps) or any(s.remedy in ("residual", "rezero") for s in steps):
        return steps
    fx = facts(model, example_inputs)
    if fx.depth < SWAP_SKIP_DEPTH or fx.has_skip:
        return steps
    swap = next(s for s in steps if s.remedy in SWAPS)
    skip = PlanStep("rezero", f"{fx.depth} plain layers after the activation swap: a zero-init residual "
                              "gain keeps the deep stack trainable", list(swap.codes))
    return sorted([*steps, skip], key=lambda s: PHASES[s.remedy])


def _optimizer_plan(codes: set[str]) -> list[PlanStep]:
    """The optimizer-level plan where surgery is refused (the planner traces the model, which a
    compiled or scripted model does not allow): clip-norm for a blow-up, warm-up for post-LN."""
    steps = []
    if codes & set(_BLOWUP):
        steps.append(PlanStep("clip-norm", "the run blew up: bound the update size", sorted(codes & set(_BLOWUP))))
    if "post-ln-no-warmup" in codes:
        steps.append(PlanStep("warmup", "post-ln-no-warmup: ramp the learning rate up over the first steps",
                              ["post-ln-no-warmup"]))
    return steps


def apply_fix(steps: list[PlanStep], model: nn.Module, optimizer: torch.optim.Optimizer,
              example_inputs: Any, findings: list[Finding], seed: int = 0,
              ramps: list[LinearWarmup] | None = None, lr_div: float = LR_FACTOR
              ) -> tuple[list[Change], list[torch.Tensor]]:
    """Apply ``steps`` to ``model`` and ``optimizer`` in place (a ``warmup`` ramp is appended to
    ``ramps``, so the caller can take it off at detach).

    Returns:
        ``(changes, reset)``: the changes made, and the parameters whose weights were re-drawn
        (their optimizer state must be reset).
    """
    changes: list[Change] = []
    reset: list[torch.Tensor] = []
    ramps = [] if ramps is None else ramps
    with torch.random.fork_rng(devices=[]):  # the user's RNG stream is left as it was
        torch.manual_seed(seed)
        for step in steps:
            if step.remedy == "lower-lr":
                changes.append(lower_lr(optimizer, lr_div, step.reason))
                continue
            if step.remedy == "warmup":
                for r in ramps:  # a new warm-up replaces a running one (two would multiply)
                    r.stop()
                ramps.append(install(optimizer, RAMP_STEPS))
                changes.append(Change("warmup", [], f"{step.reason} -> linear learning-rate warm-up "
                                      f"over the next {RAMP_STEPS} steps", "applied", {"steps": RAMP_STEPS}))
                changes.append(lower_lr(optimizer, WARMUP_LR_FACTOR, "a post-LN stack that got stuck at "
                                        "this rate is sensitive to it: the warm-up ramps to a lower peak"))
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
    """Divide every param group's learning rate by ``factor`` (a tensor rate in place), and the
    base rates of the optimizer's LR schedulers with it (``schedules.scale_schedules``).

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
    n = scale_schedules(optimizer, 1.0 / factor)  # a scheduler would write the old rate back
    return Change("lower-lr", [], f"{reason} -> learning rate divided by {factor:g}"
                  + (f" (and the base rates of {n} LR scheduler(s))" if n else ""), "applied",
                  {"factor": factor, "lr": lrs, "schedulers": n})


def lr_divisor(meta: dict, window: list[dict]) -> float:
    """``HUGE_LR_FACTOR`` where a sampled step of ``window`` moved the weights by as much as
    their norm (a finite median update ratio >= ``HUGE_STEP``), else ``LR_FACTOR``.

    Example:
        >>> meta = {"layers": [{"name": "a", "kind": "linear"}]}
        >>> lr_divisor(meta, [{"step": 4, "update_ratio": {"a": 2.5}}])
        100.0
        >>> lr_divisor(meta, [{"step": 4, "update_ratio": {"a": 0.2}}])
        10.0
    """
    _, med = median_update_ratios(meta, window)
    med = med[np.isfinite(med)]
    return HUGE_LR_FACTOR if med.size and med.max() >= HUGE_STEP else LR_FACTOR


def depth_explosion(finding: Finding) -> bool:
    """An ``exploding-gradient`` finding read from the depth profile alone (gradients larger
    toward the input side), with no growth over steps and no overflow behind it.

    While the loss is falling this is no blow-up to roll back: a net repaired with ReZero has
    small gradients inside its blocks (they scale with the zero-initialised gain), and its
    profile can read "growing toward the input" as it learns. Autofix benchmark,
    a-mlp10-sigmoid-vanish seed 2: re-drawn with relu + He + ReZero at step 10, loss 2.32 ->
    0.87 by step 40, profile 2.1 orders "growing" (threshold 2): rolled back and the rate cut
    /10, it ended at 0.891 against a reference of 0.925.

    Example:
        >>> depth_explosion(Finding("exploding-gradient", "error", "m", [], {"drop_orders": -2.1}))
        True
        >>> depth_explosion(Finding("exploding-gradient", "error", "m", [], {"blowup_step": 12}))
        False
    """
    return finding.code == "exploding-gradient" and finding.evidence.get("drop_orders", 0.0) < 0


def passing_spike(finding: Finding) -> bool:
    """An ``exploding-gradient`` finding from the norm's growth over steps with a finite loss (no
    overflow): while the run's level is still below its start it was a spike the run left.
    A healthy RoBERTa classifier (loss ~0.02) had one step at 0.96 and a gradient norm 150x its
    first, at step 207; rolled back and re-drawn at step 210, it ended at 0.75 accuracy (0.998
    plain). A blow-up that stays lifts the level, and the next check (10 steps on) acts.

    Example:
        >>> passing_spike(Finding("exploding-gradient", "error", "m", [], {"blowup_step": 207}))
        True
    """
    return finding.code == "exploding-gradient" and "blowup_step" in finding.evidence


def blew_up(findings: list[Finding]) -> bool:
    """An exploding or non-finite error among ``findings`` (the weights are a wreck)."""
    return any(f.code in _BLOWUP for f in triggering(findings))


__all__ = ["IN_PLACE", "LR_FACTOR", "WARMUP_LR_FACTOR", "OPTIMIZER_LEVEL", "RESTART", "TRIGGERS", "apply_fix", "blew_up",
           "check_allowed", "with_zero_gains", "definite", "depth_explosion", "passing_spike", "lower_lr", "lr_divisor",
           "plan_fix", "triggering"]
