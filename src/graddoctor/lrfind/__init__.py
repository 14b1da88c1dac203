"""``gd.lr_find``: a learning-rate range test that tells a learning-rate problem from a gradient-flow one.

Files: ``sweep`` (the sweep), ``state`` (snapshot and exact restore), ``batches`` (batch ->
loss), ``suggest`` (pure curve functions), ``judge`` (the ``lr-insensitive`` rule),
``result`` (``LRFindResult``). ``repair`` runs it on request (``graddoctor.fix.tuning``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from graddoctor.lrfind.batches import LossFn
from graddoctor.lrfind.judge import judge_curve
from graddoctor.lrfind.result import LRFindResult
from graddoctor.lrfind.suggest import DEFAULT_METHOD, suggest
from graddoctor.lrfind.sweep import check_args, run_sweep


def lr_find(model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable,
            loss_fn: LossFn | None = None, *, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_steps: int = 100, mode: str = "exp", smooth: float = 0.05, diverge: float = 5.0,
            watch: bool = True) -> LRFindResult:
    """Sweep the learning rate up over ``num_steps`` batches, suggest one, and judge the gradients.

    One optimizer step per batch, the learning rate of every param group raised from
    ``start_lr`` to ``end_lr``; the loader starts over when it runs out. The sweep stops when
    the loss is NaN/Inf or its running average exceeds ``diverge`` x the best so far. Then the
    model (parameters, buffers, gradients, train/eval mode), the optimizer (state such as
    momentum buffers, every param-group hyper-parameter) and the global RNGs (torch CPU and
    CUDA, ``random``, NumPy) are restored bit for bit; nothing is written to disk.

    The suggestion is the *minimum* rule's pick: a decade below the learning rate of the lowest
    smoothed loss (Smith 2017; fastai's ``lr_min``); the steepest-descent and valley picks are in
    ``suggestions`` (see ``graddoctor.lrfind.suggest`` for the rules and the benchmark that chose
    the default). With ``watch=True`` the per-layer gradient norms of the sweep
    are recorded (``graddoctor.watch``, in memory); a flat curve then says whether the input
    side's gradients vanish (finding ``lr-insensitive``, see ``graddoctor.lrfind.judge``).

    Args:
        model: the model, in the state you want to train it from.
        optimizer: its optimizer (any ``torch.optim.Optimizer``).
        train_loader: a DataLoader or any iterable of batches: ``(x, y)``, ``(*inputs, y)``, or a
            dict for Hugging Face-style models (``model(**batch)``, output with ``.loss``).
        loss_fn: ``loss_fn(output, y)`` (``loss_fn(output, batch)`` for dict batches). Default:
            cross-entropy for integer targets, MSE for float targets, the model's own loss for dicts.
        start_lr: first learning rate (> 0).
        end_lr: last learning rate (> start_lr).
        num_steps: batches in the sweep (>= 10).
        mode: "exp" (geometric steps, the usual) or "linear".
        smooth: weight of the newest loss in the running average (0 < smooth <= 1; 1: none).
        diverge: stop when the running average exceeds this many times its best (> 1).
        watch: record per-layer gradient norms during the sweep and judge them.

    Returns:
        An ``LRFindResult``: ``.lrs``, ``.losses``, ``.smoothed_losses``, ``.suggestion``,
        ``.method``, ``.findings``, ``.plot()``; ``print(result)`` says what to do.

    Raises:
        InputError: a bad argument or batch (one line naming the problem and the fix).

    Example:
        >>> import torch, graddoctor as gd
        >>> net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(64, 4, generator=g); y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
        >>> batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
        >>> before = net[0].weight.clone()
        >>> result = gd.lr_find(net, opt, batches, start_lr=1e-4, end_lr=10, num_steps=30)
        >>> result.method, torch.equal(net[0].weight, before), opt.param_groups[0]["lr"]
        ('minimum', True, 0.1)
    """
    check_args(model, optimizer, train_loader, start_lr, end_lr, num_steps, mode, smooth, diverge)
    sweep = run_sweep(model, optimizer, train_loader, loss_fn, start_lr, end_lr, num_steps, mode,
                      smooth, diverge, watch)
    curve = sweep.smoothed
    findings = judge_curve(sweep.lrs, sweep.losses, curve, sweep.gradients)
    picks = suggest(sweep.lrs, curve)
    chosen = None if findings else picks[DEFAULT_METHOD]
    return LRFindResult(sweep.lrs, sweep.losses, curve, chosen, DEFAULT_METHOD, picks,
                        sweep.diverged, findings, sweep.gradients)


__all__ = ["LRFindResult", "lr_find"]
