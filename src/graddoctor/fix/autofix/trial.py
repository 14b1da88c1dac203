"""The fix on trial: what autofix keeps to judge a fix ``TRIAL`` steps later, and the verdict.

A trial holds the loss level before the fix (``before``), the model's checkpoint and the learning
rates before it (to undo it), the fix steps it covers and their changes. A fix applied while
another is still on trial joins that trial: the two are judged together against the level before
the first, and undone together (an 8-layer sigmoid checkpoint re-drawn at step 10 got a second
round at step 50, judged against the re-drawn loss: nothing was undone).

Verdicts (``verdict``): ``helped`` (the level is below the level before), ``kept`` (a tie, with
the fix's causes gone: two stuck runs, the repaired one without the fault), ``again`` (not yet
better, but its causes are gone and its loss falls: judged again one window later, while each
window lowers it and it stays within ``judge.NEAR_FRAC`` of the level before), ``undo``.

Example:
    >>> t = open_trial(None, lambda: "cp", 2.3, 10, [1e-3])
    >>> t["steps"], t["before"]
    ([10], 2.3)
    >>> open_trial(t, lambda: "unused", 2.5, 50, [1e-3])["steps"]
    [10, 50]
    >>> verdict(t, 1.2, True, []), verdict(t, 2.31, True, []), verdict(t, 2.31, False, [])
    ('helped', 'kept', 'undo')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from graddoctor.fix.autofix.judge import FALLING_FRAC, NEAR_FRAC, falling, helped, no_worse
from graddoctor.fix.autofix.schedules import scale_schedules
from graddoctor.fix.autofix.surgery import rebind_optimizer
from graddoctor.fix.autofix.undo import restore


def open_trial(pending: dict | None, checkpoint: Callable[[], Any], now: float, step: int,
               lrs: list[float]) -> dict:
    """The trial of a fix applied at ``step``: a new one (``checkpoint()`` taken now, the level
    ``now`` and the rates ``lrs`` before it), or ``pending`` joined while it is still on trial
    (its checkpoint, level and rates: those before its first fix)."""
    if pending is None:
        return {"cp": checkpoint(), "before": now, "step": step, "steps": [step], "lrs": lrs}
    return {**{k: v for k, v in pending.items() if k not in ("due", "last")}, "steps": [*pending["steps"], step]}


def verdict(trial: dict, now: float, gone: bool, window: list[dict]) -> str:
    """``helped``, ``kept``, ``again`` or ``undo`` for ``trial`` at the level ``now``; ``gone``:
    the fix's causes are gone from the trial window (never for a restart); ``window``: the records
    since the fix (``judge.falling`` reads it at the first verdict; later ones compare with the
    level at the previous verdict, ``trial["last"]``)."""
    before = trial["before"]
    if helped(before, now):
        return "helped"
    tie = no_worse(before, now)
    fell = now < FALLING_FRAC * trial["last"] if "last" in trial else falling(window)
    if gone and fell and not tie and now <= NEAR_FRAC * before:
        return "again"
    return "kept" if tie and gone else "undo"


def undo_line(trial: dict, step: int, now: float) -> str:
    """The one-line warning of an undo.

    Example:
        >>> undo_line({"step": 10, "steps": [10, 50], "before": 2.3}, 130, 2.5)[:48]
        'step 130: the fixes of steps 10, 50 did not help'
    """
    which = (f"the fix of step {trial['step']}" if len(trial["steps"]) == 1
             else f"the fixes of steps {', '.join(map(str, trial['steps']))}")
    return (f"step {step}: {which} did not help (loss {trial['before']:.4g} -> {now:.4g}): undone "
            "(modules, weights and learning rate as before it)")


def undo_trial(trial: dict, model: nn.Module, optimizer: torch.optim.Optimizer, ramps: list) -> dict:
    """Undo the fixes of ``trial`` in place: their hooks removed, the warm-up ramps stopped (not
    removed: torch may be iterating the hooks; detach removes them), the model's tree, flags and
    weights restored, the learning rates (and the schedulers' base rates a ``lower-lr`` scaled)
    as before, the optimizer rebound. Returns ``rebind_optimizer``'s counts."""
    before = {id(p) for p in model.parameters()}
    for c in trial["changes"]:
        for h in c.handles:
            h.remove()
    for r in ramps:
        r.stop()
    restore(trial["cp"])
    for g, lr in zip(optimizer.param_groups, trial["lrs"]):
        g["lr"] = lr
    for c in trial["changes"]:
        if c.remedy == "lower-lr":
            scale_schedules(optimizer, c.details["factor"])
    return rebind_optimizer(optimizer, model, before, list(model.parameters()))


__all__ = ["open_trial", "undo_line", "undo_trial", "verdict"]
