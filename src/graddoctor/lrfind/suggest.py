"""Pure functions over a range-test curve: the LR schedule, smoothing and the suggestions.

Every suggestion reads the *smoothed* loss (no lag, ``zero_lag``) against ``log10(lr)``:

- ``minimum`` (the default; Smith 2017, sec. 3.3, fastai's ``lr_min``): one decade below the
  learning rate where the smoothed loss is lowest. Past the minimum the steps are too large
  for the loss to keep falling; a decade below it training is still stable, and fast. The
  minimum of a whole smoothed curve moves little with noise. It is read between the sweep's
  points (``minimum_lr``: the vertex of a parabola fitted in log10(lr) to the 7 points around
  the lowest one), so seeds whose lowest point falls one sweep step apart (x1.2) do not
  jump by a whole step.
- ``steepest``: where the smoothed loss falls fastest per decade. ``torch-lr-finder`` reads
  it off a one-way average (weight 0.05 of the newest loss), which trails the curve by ~19
  steps (1.5 decades of a 100-step sweep over 8); Lightning reads the steepest fall per unit
  of lr (not per decade) of a debiased one-way average (beta 0.98). On our no-lag curve it
  marks where the loss falls fastest, which for a short, late descent (a default-init MLP
  under SGD) is right at the edge of divergence.
- ``valley`` (fastai >= 2.4): the longest run of decreasing losses (longest decreasing
  subsequence), and the point about half-way down it. Often decades too low for SGD.

``DEFAULT_METHOD`` is ``minimum``, chosen on the digits MLP and MNIST-1D CNN rows of
``benchmarks/lr_find.py`` (5 seeds, same training budget) and confirmed on the held-out
Transformer row (numbers in ``benchmarks/README.md``, "LR finder"). ``repair`` uses it with
``keep_architecture=True`` too (it asked for ``valley`` until 2026-12-02: decades too low for
Adam on 20- and 200-layer edge-of-chaos MLPs).

Example:
    >>> lrs = lr_schedule(1e-4, 1.0, 5, "exp")
    >>> [round(v, 6) for v in lrs]
    [0.0001, 0.001, 0.01, 0.1, 1.0]
    >>> smoothed([1.0, 1.0, 0.0], 0.5)
    [1.0, 1.0, 0.42857142857142855]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS: tuple[str, ...] = ("minimum", "steepest", "valley")
DEFAULT_METHOD = "minimum"
#: ``minimum`` suggests the learning rate of the lowest smoothed loss divided by this (one decade)
BELOW_MINIMUM = 10.0
#: ``minimum_lr`` fits its parabola to the lowest point and this many on each side: 7 points,
#: +-0.24 decades of a 100-step sweep over 8. Chosen among 1-8 on the digits MLP and MNIST-1D
#: CNN rows of ``benchmarks/lr_find.py`` (smallest spread over 5 seeds; 1-2 points follow the
#: grid, 6-8 reach into the descent and pull the pick down by seed-dependent amounts).
MINIMUM_FIT_HALF_WIDTH = 3
#: points left out at each end of the curve by ``steepest`` (the start is flat and
#: noisy, the end is divergence); the same as torch-lr-finder's skip_start/skip_end scaled
SKIP_START_FRAC = 0.1
SKIP_END_FRAC = 0.05


def lr_schedule(start_lr: float, end_lr: float, num_steps: int, mode: str = "exp") -> list[float]:
    """``num_steps`` learning rates from ``start_lr`` to ``end_lr``, geometric ("exp") or even ("linear").

    Example:
        >>> lr_schedule(0.0, 1.0, 3, "linear")
        [0.0, 0.5, 1.0]
    """
    if num_steps == 1:
        return [float(start_lr)]
    t = np.linspace(0.0, 1.0, num_steps)
    if mode == "exp":
        return [float(v) for v in start_lr * (end_lr / start_lr) ** t]
    return [float(v) for v in start_lr + (end_lr - start_lr) * t]


def smoothed(losses: Sequence[float], smooth: float) -> list[float]:
    """Debiased exponential moving average; ``smooth`` is the weight of the newest loss (1: none).

    Debiasing (Kingma & Ba 2015, sec. 3) keeps the first points at the loss's scale.

    Example:
        >>> smoothed([2.0, 2.0], 0.1)
        [2.0, 2.0]
    """
    beta = 1.0 - smooth
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * loss
        out.append(avg / (1.0 - beta ** (i + 1)) if beta < 1.0 else avg)
    return out


def zero_lag(losses: Sequence[float], smooth: float) -> list[float]:
    """``smoothed`` run forwards, then backwards over the result: no lag.

    A one-way average trails the curve by about ``(1 - smooth) / smooth`` points (19 at
    0.05: 1.5 decades of a 100-step sweep over 8), which would move every suggestion to a
    larger learning rate; the backward pass cancels that shift.

    Example:
        >>> curve = zero_lag([0.0, 0.0, 3.0, 0.0, 0.0], 0.5)
        >>> curve.index(max(curve))  # the peak stays where it was
        2
    """
    return smoothed(smoothed(losses, smooth)[::-1], smooth)[::-1]


def steepest(lrs: Sequence[float], losses: Sequence[float]) -> int | None:
    """Index of the steepest fall of ``losses`` against log10(lr), ends skipped; None if too short.

    Example:
        >>> lrs = [10.0 ** (k / 4) for k in range(-40, 1)]
        >>> losses = [2 - math.tanh(math.log10(lr) + 5) for lr in lrs]
        >>> round(math.log10(lrs[steepest(lrs, losses)]), 1)
        -5.0
    """
    n = len(losses)
    lo, hi = int(n * SKIP_START_FRAC), n - max(1, int(n * SKIP_END_FRAC))
    if hi - lo < 3:
        return None
    grad = np.gradient(np.asarray(losses[lo:hi], float), np.log10(np.asarray(lrs[lo:hi], float)))
    return lo + int(np.argmin(grad))


def valley(losses: Sequence[float]) -> int | None:
    """Index half-way down the longest decreasing run (fastai's valley rule); None if too short.

    The longest decreasing subsequence ends at ``end`` and spans ``length`` points; the pick
    is ``start + third + third // 2`` (``third = (end - start) / 3``), as in fastai.

    Example:
        >>> valley([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 3.0, 9.0])
        1
    """
    n = len(losses)
    if n < 3:
        return None
    run = [1] * n
    best_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[i] > run[best_end]:
            best_end = i
    start = best_end - run[best_end] + 1
    third = (best_end - start) / 3
    return start + int(third) + int(third / 2)


def minimum(losses: Sequence[float]) -> int | None:
    """Index of the lowest loss (the first one on a tie); None if the curve is too short.

    ``minimum_lr`` reads the minimum between the points around it; ``suggest`` divides that
    learning rate by ``BELOW_MINIMUM``.

    Example:
        >>> minimum([2.3, 2.0, 1.2, 1.5, 9.0])
        2
    """
    if len(losses) < 3:
        return None
    return int(np.argmin(np.asarray(losses, float)))


def minimum_lr(lrs: Sequence[float], losses: Sequence[float],
               half_width: int = MINIMUM_FIT_HALF_WIDTH) -> float | None:
    """The learning rate of the lowest loss, read between the points; None if the curve is too short.

    A parabola in log10(lr) is fitted (least squares) to the lowest point (``minimum``) and
    ``half_width`` points on each side (fewer at an end of the curve); its vertex, kept within
    those points, is the pick. Where the parabola opens downwards (no minimum in the window)
    the lowest point itself is returned. The same sub-sample peak estimate as parabolic
    interpolation of a spectrum's peak, over more than 3 points so that one noisy point
    does not move it. Where the descent ends in a cliff (a kink, not a valley) the vertex
    sits about one point before the lowest one, on the side of the smaller learning rate.

    Example:
        >>> lrs = lr_schedule(1e-3, 1.0, 13, "exp")  # 0.25 decades apart
        >>> losses = [(math.log10(v) + 1.6) ** 2 for v in lrs]  # lowest at 10 ** -1.6, off the grid
        >>> round(math.log10(lrs[minimum(losses)]), 2), round(math.log10(minimum_lr(lrs, losses)), 2)
        (-1.5, -1.6)
    """
    low = minimum(losses)
    if low is None:
        return None
    lo, hi = max(0, low - half_width), min(len(losses), low + half_width + 1)
    x = np.log10(np.asarray(lrs[lo:hi], float))
    curvature, slope, _ = np.polyfit(x, np.asarray(losses[lo:hi], float), 2)
    if not curvature > 0:
        return float(lrs[low])
    return float(10 ** np.clip(-slope / (2 * curvature), x[0], x[-1]))


def suggest(lrs: Sequence[float], losses: Sequence[float]) -> dict[str, float | None]:
    """Every method's pick: ``{"minimum": lr, "steepest": lr, "valley": lr}`` (None: curve too short,
    or, for "minimum", a pick below the first rate swept: the loss was lowest at the start).

    Example:
        >>> lrs = lr_schedule(1e-5, 1.0, 50, "exp")
        >>> picks = suggest(lrs, [2 - math.tanh(math.log10(v) + 2) + 9 * max(v - 0.1, 0) for v in lrs])
        >>> sorted(picks), round(math.log10(picks["minimum"]), 1)  # lowest at 0.1: a kink
        (['minimum', 'steepest', 'valley'], -2.1)
    """
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    xs, ys = [lrs[i] for i in finite], [losses[i] for i in finite]
    low = minimum_lr(xs, ys)
    picks = {"steepest": steepest(xs, ys), "valley": valley(ys)}
    out = {m: (None if i is None else float(xs[i])) for m, i in picks.items()}
    # a pick below the sweep's first rate was never tried (the loss was lowest at the start)
    pick = None if low is None or not xs or low / BELOW_MINIMUM < xs[0] else low / BELOW_MINIMUM
    return {"minimum": pick, **out}


__all__ = ["BELOW_MINIMUM", "DEFAULT_METHOD", "METHODS", "MINIMUM_FIT_HALF_WIDTH", "lr_schedule", "minimum", "minimum_lr",
           "smoothed", "steepest", "suggest", "valley", "zero_lag"]
