"""Figures of a watch run over layers and steps: gradient flow, update ratio, gradient heatmap, loss.

Example:
    >>> meta = {"layers": [{"name": "0"}, {"name": "2"}]}
    >>> steps = [{"type": "step", "step": 1, "loss": 2.3, "grad_norm": {"0": 1e-6, "2": 0.1}}]
    >>> gradient_flow((meta, steps)).axes[0].get_yscale()
    'log'
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from graddoctor.present.figure_common import (
    MISSING_COLOR,
    NONFINITE_COLOR,
    empty_figure,
    figure_side,
    layer_axis,
    short_name,
)
from graddoctor.present.run_records import Run, as_run, layer_names, matrix, pick_steps
from graddoctor.report import Finding, Report, run_events
from graddoctor.runlog import as_float, is_nonfinite

_SEVERITY_COLOR = {"error": "tab:red", "warning": "tab:orange", "info": "tab:blue"}


def _profile(source: Any, key: str, steps: Any, title: str, ylabel: str, what: str) -> Figure:
    """Shared body of gradient_flow / update_ratio: one log-scale line per chosen step."""
    meta, recs = as_run(source)
    names = layer_names(meta, recs, key)
    ids, values, bad = matrix(recs, key, names)
    if not len(ids) or not names:
        return empty_figure(title, f"no {what} recorded in this run")
    cols = pick_steps(ids, steps)
    fig = Figure(figsize=(figure_side(0.25 * len(names), 7), 4.2), layout="constrained")
    ax = fig.add_subplot()
    ax.set_yscale("log")
    x = np.arange(len(names))
    cmap = colormaps["viridis"]
    plotted = False
    for k, c in enumerate(cols):
        y = values[:, c].copy()
        y[y <= 0] = np.nan
        color = cmap(0.15 + 0.75 * k / max(1, len(cols) - 1))
        if np.isfinite(y).any():
            ax.plot(x, y, marker="o", ms=3, lw=1.2, color=color, label=f"step {ids[c]:.0f}")
            plotted = True
    if not plotted:
        ax.set_yscale("linear")
    trans = ax.get_xaxis_transform()
    nonfinite = bad[:, cols].any(axis=1)
    nothing = ~nonfinite & ~(values[:, cols] > 0).any(axis=1)
    if nonfinite.any():
        ax.scatter(x[nonfinite], np.full(nonfinite.sum(), 0.97), marker="v", color=NONFINITE_COLOR,
                   transform=trans, zorder=5, label="NaN/Inf")
    if nothing.any():
        ax.scatter(x[nothing], np.full(nothing.sum(), 0.03), marker="x", color="0.45",
                   transform=trans, zorder=5, label="none (frozen / zero)")
    layer_axis(ax, names)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


def gradient_flow(source: Report | Run, steps: int | Iterable[int] | None = None) -> Figure:
    """Gradient L2 norm per layer (log scale), one line per step; input side on the left.

    A vanishing gradient is a line falling to the left by orders of magnitude. NaN/Inf are
    marked at the top in red, layers without gradient (frozen, unused) by an x at the bottom.

    Args:
        source: a watch Report or ``(meta, steps)``.
        steps: a step number, several, or None for five evenly spaced recorded steps.

    Example:
        >>> fig = gradient_flow(w.report(), steps=[1, 100])  # doctest: +SKIP
    """
    return _profile(source, "grad_norm", steps, "gradient norm by layer", "‖grad‖₂", "gradient norms")


def update_ratio(source: Report | Run, steps: int | Iterable[int] | None = None) -> Figure:
    """Update/weight ratio ``‖Δw‖/‖w‖`` per layer (log scale) on sampled steps.

    A dashed line marks 1e-3, the usual healthy order of magnitude for SGD-like training;
    input-side layers orders of magnitude below it have stalled.

    Example:
        >>> fig = update_ratio(w.report())  # doctest: +SKIP
    """
    fig = _profile(source, "update_ratio", steps, "update / weight ratio by layer", "‖Δw‖ / ‖w‖",
                   "update ratios")
    ax = fig.axes[0]
    if ax.get_yscale() == "log":
        ax.axhline(1e-3, ls="--", color="0.4", lw=1)
        ax.text(0.01, 1e-3, " 1e-3", color="0.4", fontsize=7, va="bottom", transform=ax.get_yaxis_transform())
    return fig


def grad_heatmap(source: Report | Run, max_steps: int = 400) -> Figure:
    """Layer x step heatmap of log10 gradient norm (input layers on top).

    Grey cells: no gradient recorded (frozen/unused layer); red cells: NaN/Inf. Runs longer than
    ``max_steps`` are shown on every k-th step (a NaN anywhere in a column block is kept).

    Example:
        >>> fig = grad_heatmap(w.report())  # doctest: +SKIP
    """
    meta, recs = as_run(source)
    names = layer_names(meta, recs)
    ids, values, bad = matrix(recs, "grad_norm", names)
    title = "log10 gradient norm, layer x step"
    if not len(ids) or not names:
        return empty_figure(title, "no gradient norms recorded in this run")
    k = max(1, math.ceil(len(ids) / max_steps))
    if k > 1:
        n = len(ids) // k * k
        ids, values = ids[:n:k], values[:, :n:k]
        bad = bad[:, :n].reshape(len(names), -1, k).any(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.log10(np.where(values > 0, values, np.nan))
    fig = Figure(figsize=(8, figure_side(0.22 * len(names) + 1.2, 3)), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad=MISSING_COLOR)
    extent = (-0.5, len(ids) - 0.5, len(names) - 0.5, -0.5)
    im = ax.imshow(np.ma.masked_invalid(logv), aspect="auto", interpolation="nearest", cmap=cmap,
                   extent=extent)
    if bad.any():
        ax.imshow(np.ma.masked_where(~bad, bad.astype(float)), aspect="auto", interpolation="nearest",
                  cmap=ListedColormap([NONFINITE_COLOR]), extent=extent)
    fig.colorbar(im, ax=ax, label="log10 ‖grad‖₂")
    every = max(1, math.ceil(len(names) / 40))
    ax.set_yticks(range(0, len(names), every), [short_name(n) for n in names[::every]], fontsize=7)
    ticks = np.linspace(0, len(ids) - 1, min(8, len(ids))).round().astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{ids[t]:.0f}" for t in ticks])
    events = run_events(source.data) if isinstance(source, Report) else []
    mark_events(ax, events, x_of=lambda t: float(np.interp(t, ids, np.arange(len(ids)))) + 0.5, color="white")
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input at top)")
    ax.set_title(title + (" (grey: no gradient, red: NaN/Inf)" if bad.any() or np.isnan(logv).any() else ""),
                 fontsize=10)
    return fig


def loss_curve(source: Report | Run, findings: Sequence[Finding] | None = None,
               events: Sequence[dict] | None = None) -> Figure:
    """Training loss by step; NaN/Inf losses in red at the top, findings and autofix rounds marked at their step.

    Args:
        findings: findings to mark (default: the report's own, when ``source`` is a Report).
        events: events to mark with a solid green line and their remedies (default: the report's
            ``data["events"]`` / ``data["autofix"]``, when ``source`` is a Report).

    Example:
        >>> fig = loss_curve(w.report())  # doctest: +SKIP
    """
    meta, recs = as_run(source)
    if findings is None:
        findings = source.findings if isinstance(source, Report) else []
    if events is None:
        events = run_events(source.data) if isinstance(source, Report) else []
    rows = [s for s in recs if "loss" in s]
    title = "training loss"
    if not rows:
        return empty_figure(title, "no loss recorded in this run")
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    loss = np.array([as_float(s.get("loss")) for s in rows])
    bad = np.array([is_nonfinite(s.get("loss")) for s in rows])
    skipped = np.array([bool(s.get("skipped")) for s in rows])
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    smooth = _moving_average(loss, max(1, len(loss) // 50))
    ax.plot(ids, loss, lw=0.8, color="tab:blue", alpha=0.45 if smooth is not loss else 1.0, label="loss")
    if smooth is not loss:
        ax.plot(ids, smooth, lw=1.6, color="tab:blue", label="moving average")
    trans = ax.get_xaxis_transform()
    if bad.any():
        ax.scatter(ids[bad], np.full(bad.sum(), 0.97), marker="v", color=NONFINITE_COLOR, transform=trans,
                   zorder=5, label="NaN/Inf loss")
    if skipped.any():
        ax.scatter(ids[skipped], np.full(skipped.sum(), 0.03), marker="|", color="0.4", transform=trans,
                   label="skipped (AMP)")
    for n, f in enumerate(f for f in findings if f.step is not None):
        color = _SEVERITY_COLOR.get(f.severity, "0.3")
        ax.axvline(f.step, color=color, ls="--", lw=1)
        ax.text(f.step, 0.92 - 0.08 * (n % 10), f" {f.code}", color=color, transform=trans, fontsize=7,
                va="top", bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    mark_events(ax, events)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def mark_events(ax: Any, events: Sequence[dict], x_of: Any = None, color: str = "tab:green") -> None:
    """A solid vertical line per event (an autofix round) at its step, labelled at the bottom
    ``autofix: <remedies>``; ``x_of`` maps a step to the axis' x (default: the step itself).

    Example:
        >>> fig = Figure(); ax = fig.add_subplot()
        >>> mark_events(ax, [{"step": 40, "kind": "autofix", "remedies": ["relu", "he-init"]}])
        >>> [t.get_text() for t in ax.texts]
        [' autofix: relu, he-init']
    """
    trans = ax.get_xaxis_transform()
    for n, e in enumerate(events):
        x = e["step"] if x_of is None else x_of(e["step"])
        what = ", ".join(str(r) for r in e.get("remedies") or []) or ", ".join(str(c) for c in e.get("codes") or [])
        ax.axvline(x, color=color, lw=1.6, label=None if n else f"{e.get('kind', 'event')} (graddoctor)")
        ax.text(x, 0.04 + 0.08 * (n % 5), f" {e.get('kind', 'event')}: {what}", color="tab:green",
                transform=trans, fontsize=7, va="bottom",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})


def _moving_average(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing mean over ``k`` points, NaN-aware; ``y`` itself when k == 1."""
    if k <= 1:
        return y
    ok = np.isfinite(y)
    sums = np.convolve(np.where(ok, y, 0.0), np.ones(k), mode="full")[: len(y)]
    counts = np.convolve(ok.astype(float), np.ones(k), mode="full")[: len(y)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
