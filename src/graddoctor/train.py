"""One small training loop, shared by the demo, the lab and the benchmarks.

:func:`fit` runs minibatch steps (forward, ``zero_grad``, backward, optional clipping,
``optimizer.step()``) over an iterable of ``(inputs, targets)`` batches and returns a
:class:`TrainLog`. The batch order comes from :func:`sampled_batches` (drawn with
replacement, one seeded draw per step) or :func:`shuffled_batches` (seeded epochs without
replacement), or any iterable such as a DataLoader. ``on_step`` is called after every
optimizer step: plug ``graddoctor.watch`` in there (``w.step(loss)``), a scheduler, a
progress bar or an evaluation that stops the run.

Example:
    >>> import torch
    >>> from torch import nn
    >>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    >>> net = nn.Linear(4, 3)
    >>> log = fit(net, torch.optim.SGD(net.parameters(), lr=0.1), sampled_batches(x, y, 16, seed=0), steps=5)
    >>> log.steps, len(log.losses)
    (5, 5)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

Batch = tuple[Any, torch.Tensor]
#: called after each optimizer step with (step number from 1, loss tensor); return True to stop
StepCallback = Callable[[int, torch.Tensor], "bool | None"]


@dataclass
class TrainLog:
    """What :func:`fit` records.

    Args:
        losses: training loss of every step run (nan for a non-finite step that stopped the run).
        grad_norms: total gradient norm (before clipping) of every step, when asked for.
        seconds: wall-clock time of the loop.

    Example:
        >>> log = TrainLog([2.3, 1.9])
        >>> log.steps
        2
    """

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def steps(self) -> int:
        """Number of steps run (a non-finite step that stopped the run included)."""
        return len(self.losses)


def sampled_batches(x: Any, y: torch.Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless minibatches drawn with replacement: one ``randint`` per step from a generator seeded with ``seed``.

    Args:
        x: inputs (first axis: samples).
        y: targets (first axis: samples).
        batch_size: samples per batch.
        seed: seed of the private generator (the global RNG is not touched).

    Returns:
        An endless iterator of ``(x[idx], y[idx])``.

    Raises:
        Nothing itself; indexing errors come from ``x`` and ``y``.

    Example:
        >>> import torch
        >>> xb, yb = next(sampled_batches(torch.arange(10.0), torch.arange(10), 4, seed=0))
        >>> bool((xb == yb).all()), len(xb)
        (True, 4)
    """
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(x), (batch_size,), generator=gen)
        yield x[idx], y[idx]


def shuffled_batches(x: Any, y: torch.Tensor, batch_size: int, seed: int) -> Iterator[Batch]:
    """Endless minibatches in seeded epochs: a fresh permutation once fewer than ``batch_size`` samples are left.

    Args:
        x: inputs (first axis: samples).
        y: targets (first axis: samples).
        batch_size: samples per batch (at most ``len(x)``).
        seed: seed of the private generator.

    Returns:
        An endless iterator of ``(x[idx], y[idx])``; the tail of each epoch that does not fill
        a batch is skipped.

    Raises:
        Nothing itself; indexing errors come from ``x`` and ``y``.

    Example:
        >>> import torch
        >>> it = shuffled_batches(torch.arange(4), torch.arange(4), 2, seed=0)
        >>> sorted(next(it)[0].tolist() + next(it)[0].tolist())
        [0, 1, 2, 3]
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(x)
    perm, pos = torch.randperm(n, generator=gen), 0
    while True:
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        yield x[idx], y[idx]


def fit(model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterable[Batch], *,
        steps: int | None = None, loss_fn: Callable[..., torch.Tensor] = F.cross_entropy,
        clip: float | None = None, grad_norms: bool = False, stop_nonfinite: bool = False,
        seconds: float | None = None, on_step: StepCallback | None = None) -> TrainLog:
    """Train ``model`` in train mode on ``batches`` until ``steps`` steps, the batches or ``seconds`` run out.

    Each step: ``loss_fn(model(inputs), targets)``, ``optimizer.zero_grad(set_to_none=True)``,
    ``loss.backward()``, the total gradient norm (clipped to ``clip`` if given),
    ``optimizer.step()``, then ``on_step(step, loss)``.

    Args:
        model: the model (set to train mode).
        optimizer: its optimizer.
        batches: ``(inputs, targets)`` pairs, e.g. :func:`sampled_batches`.
        steps: at most this many steps (None: until the batches or the time run out).
        loss_fn: ``loss_fn(output, targets)``.
        clip: clip the total gradient norm to this value.
        grad_norms: record the total gradient norm of every step (implied by ``clip`` and
            ``stop_nonfinite``).
        stop_nonfinite: stop, without an optimizer step, on a non-finite loss or gradient norm
            (recorded as loss nan, norm inf).
        seconds: stop before a step once this much wall-clock time has passed.
        on_step: called after each optimizer step; returning True stops the run.

    Returns:
        A :class:`TrainLog`.

    Raises:
        Whatever the model, loss or optimizer raise.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> batches = sampled_batches(torch.randn(8, 2), torch.randint(0, 2, (8,)), 4, seed=0)
        >>> log = fit(net, torch.optim.SGD(net.parameters(), lr=0.1), batches, steps=10,
        ...           on_step=lambda step, loss: step == 3)
        >>> log.steps
        3
    """
    log = TrainLog()
    measure = grad_norms or clip is not None or stop_nonfinite
    start = time.perf_counter()
    model.train()
    for step, (inputs, targets) in enumerate(batches if steps is None else islice(batches, steps), 1):
        if seconds is not None and time.perf_counter() - start > seconds:
            break
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if measure:
            params = [p for p in model.parameters() if p.grad is not None]
            norm = float(nn.utils.clip_grad_norm_(params, clip if clip is not None else math.inf))
            if stop_nonfinite and not (torch.isfinite(loss) and math.isfinite(norm)):
                log.losses.append(math.nan)
                log.grad_norms.append(math.inf)
                break
            log.grad_norms.append(norm)
        log.losses.append(float(loss.detach()))
        optimizer.step()
        if on_step is not None and on_step(step, loss):
            break
    log.seconds = time.perf_counter() - start
    return log


def accuracy(model: nn.Module, x: Any, y: torch.Tensor) -> float:
    """Fraction of ``x`` whose arg-max output is ``y``, in eval mode without gradients (mode restored).

    Args:
        model: a classifier.
        x: inputs.
        y: class indices.

    Returns:
        The accuracy in [0, 1].

    Raises:
        Whatever the model raises.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> 0.0 <= accuracy(net, torch.randn(5, 2), torch.zeros(5, dtype=torch.long)) <= 1.0
        True
    """
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return (model(x).argmax(-1) == y).float().mean().item()
    finally:
        model.train(was)


__all__ = ["TrainLog", "accuracy", "fit", "sampled_batches", "shuffled_batches"]
