"""The range test itself: train one batch per learning rate, record the loss, then put everything back.

Every param group is set to the same learning rate at each step (the suggestion is one
number). The sweep stops early when the loss is not finite or its running average
(``suggest.smoothed``: it cannot look ahead) exceeds ``diverge`` times its best, after
``MIN_STEPS`` steps. Gradient norms per layer are recorded by ``graddoctor.watch`` (in memory, nothing on disk).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from graddoctor.diagnose.watching import paused_watchers, watch
from graddoctor.errors import InputError
from graddoctor.lrfind.batches import LossFn, batch_loss, cycle
from graddoctor.lrfind.state import Snapshot
from graddoctor.lrfind.suggest import lr_schedule, smoothed, zero_lag
from graddoctor.modelmap.support import uninitialised_reason
from graddoctor.report import Report

#: steps before the divergence test may stop the sweep (the first losses are noisy)
MIN_STEPS = 5


@dataclass
class Sweep:
    """The curve up to where it stopped (``smoothed``: ``capped``, then ``zero_lag``) and the
    watch report."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    diverged: bool
    gradients: Report | None = None


def check_args(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
               start_lr: float, end_lr: float, num_steps: int, mode: str, smooth: float,
               diverge: float) -> None:
    """Raise a one-line ``InputError`` naming the first bad argument and its fix."""
    if not isinstance(model, nn.Module):
        raise InputError(f"lr_find() needs an nn.Module as model, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputError(f"lr_find() needs a torch.optim.Optimizer, got {type(optimizer).__name__}; "
                         "build one over model.parameters()")
    unready = uninitialised_reason(model)
    if unready is not None:  # lazy or meta-device parameters cannot be snapshot and restored
        raise InputError(f"lr_find(): {unready}")
    own = {id(p) for p in model.parameters()}
    if not any(id(p) in own for g in optimizer.param_groups for p in g["params"]):
        raise InputError("the optimizer holds none of the model's parameters; build it over "
                         "model.parameters()")
    if not hasattr(train_loader, "__iter__"):
        raise InputError(f"train_loader must be iterable (a DataLoader or a list of (x, y) batches), "
                         f"got {type(train_loader).__name__}")
    if not (0 < start_lr < end_lr) or not math.isfinite(end_lr):
        raise InputError(f"need 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 10:
        raise InputError(f"num_steps={num_steps!r} must be an integer >= 10 (100 is typical)")
    if mode not in ("exp", "linear"):
        raise InputError(f"mode={mode!r} must be 'exp' (geometric, the usual) or 'linear'")
    if not 0 < smooth <= 1:
        raise InputError(f"smooth={smooth} must be in (0, 1]: the weight of the newest loss (0.05 typical)")
    if not diverge > 1:
        raise InputError(f"diverge={diverge} must be > 1 (the loss over the best loss that stops the sweep)")


def run_sweep(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
              loss_fn: LossFn | None, start_lr: float, end_lr: float, num_steps: int, mode: str,
              smooth: float, diverge: float, watch_gradients: bool) -> Sweep:
    """Sweep the learning rate (model in train mode), then restore model, optimizer and RNGs; the
    user's watchers of ``optimizer`` record none of its steps (``paused_watchers``)."""
    with paused_watchers(optimizer):
        return _sweep(model, optimizer, train_loader, loss_fn, start_lr, end_lr, num_steps, mode, smooth,
                      diverge, watch_gradients)


def _sweep(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
           loss_fn: LossFn | None, start_lr: float, end_lr: float, num_steps: int, mode: str,
           smooth: float, diverge: float, watch_gradients: bool) -> Sweep:
    """``run_sweep`` with the user's watchers paused."""
    schedule = lr_schedule(start_lr, end_lr, num_steps, mode)
    snapshot = Snapshot.take(model, optimizer)
    lrs: list[float] = []
    losses: list[float] = []
    diverged = False
    watcher = (watch(model, optimizer, activation_every=0, update_every=num_steps + 1)
               if watch_gradients else None)
    try:
        model.train()
        batches = cycle(train_loader)
        for i, lr in enumerate(schedule):
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad()
            loss = batch_loss(model, next(batches), loss_fn, first=i == 0)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            if watcher is not None:
                watcher.step(loss.detach())
            lrs.append(lr)
            losses.append(value)
            if not math.isfinite(value):
                diverged = True
                break
            average = smoothed(losses, smooth)
            if len(losses) >= MIN_STEPS and average[-1] > diverge * min(average):
                diverged = True
                break
    finally:
        if watcher is not None:
            watcher.detach()
        snapshot.restore(model, optimizer)
    gradients = watcher.report() if watcher is not None else None
    curve = no_lag_curve(losses, smooth, diverge) if losses else []
    return Sweep(lrs, losses, curve, diverged, gradients)


def no_lag_curve(losses: list[float], smooth: float, diverge: float) -> list[float]:
    """The smoothed curve the suggestions read: ``zero_lag`` of the ``capped`` losses up to the
    blow-up (the first loss after the best that exceeds the level the curve started from), the
    one-way average after it.

    The backward pass of ``zero_lag`` would otherwise carry the divergence at the end of the
    sweep dozens of steps back (measured: a digits MLP whose raw loss fell from 2.30 to 1.5
    just before blowing up had a smoothed curve that only rose, 2.30 -> 2.76).

    Example:
        >>> curve = no_lag_curve([2.0, 2.0, 1.5, 1.0, 1e9, 1e9], 0.5, 5.0)
        >>> curve[3] < 1.5 and curve[-1] > 2.0  # the fall is kept, the blow-up after it too
        True
    """
    clipped = capped(losses, smooth, diverge)
    forward = smoothed(clipped, smooth)
    best = min(range(len(forward)), key=forward.__getitem__)
    level = max(forward[: best + 1])
    end = next((i for i in range(best + 1, len(clipped)) if clipped[i] > level), len(clipped))
    return zero_lag(clipped[:end], smooth) + forward[end:]


def capped(losses: list[float], smooth: float, diverge: float) -> list[float]:
    """``losses`` with every value above ``diverge`` x the best running average (and NaN/Inf) set
    to that cap: one huge loss at the end would otherwise swamp the no-lag smoothed curve for
    dozens of steps back.

    Example:
        >>> capped([2.0, 1.0, 1.0, float("nan"), 1e9], 1.0, 5.0)
        [2.0, 1.0, 1.0, 5.0, 5.0]
    """
    cap = diverge * min(v for v in smoothed([v for v in losses if math.isfinite(v)], smooth))
    return [v if math.isfinite(v) and v <= cap else cap for v in losses]


__all__ = ["MIN_STEPS", "Sweep", "capped", "check_args", "no_lag_curve", "run_sweep"]
