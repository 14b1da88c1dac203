"""Figures for watch runs and check reports: pure functions that return a matplotlib Figure.

Each function takes a watch ``Report`` (its ``data`` holds ``meta`` and ``steps``, see the run-log
format) or a ``(meta, steps)`` pair as returned by ``Watcher.records()`` / ``runlog.read_run``.
Figures are built without pyplot (headless Agg canvas, no global state): save them with
``fig.savefig(path)`` or show them in a notebook with ``display(fig)``.

Example:
    >>> import graddoctor as gd
    >>> meta = {"layers": [{"name": "0"}, {"name": "2"}]}
    >>> steps = [{"type": "step", "step": 1, "loss": 2.3, "grad_norm": {"0": 1e-6, "2": 0.1}}]
    >>> fig = gd.plots.gradient_flow((meta, steps))
    >>> fig.axes[0].get_yscale()
    'log'
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from graddoctor.errors import InputError
from graddoctor.report import Finding, Report
from graddoctor.runlog import as_float as _num
from graddoctor.runlog import is_nonfinite as _is_nonfinite

Run = tuple[dict[str, Any], list[dict[str, Any]]]

_SEVERITY_COLOR = {"error": "tab:red", "warning": "tab:orange", "info": "tab:blue"}
_NONFINITE = "tab:red"
_MISSING = "0.85"


# ----------------------------------------------------------------------------- run records


def as_run(source: Report | Run | dict[str, Any]) -> Run:
    """``(meta, steps)`` from a watch Report, a ``(meta, steps)`` pair or a ``{"meta", "steps"}`` dict.

    Example:
        >>> as_run(({"layers": []}, [{"type": "step", "step": 0}]))[1][0]["step"]
        0
    """
    if isinstance(source, Report):
        data = source.data
    elif isinstance(source, dict):
        data = source
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        data = {"meta": source[0], "steps": source[1]}
    else:
        raise InputError(
            f"expected a watch Report or (meta, steps), got {type(source).__name__}; "
            "pass w.report() or w.records()"
        )
    meta, steps = data.get("meta"), data.get("steps")
    if not isinstance(meta, dict) or not isinstance(steps, list):
        raise InputError(
            "this report holds no watch run (data['meta'] and data['steps']); "
            "for a check report use plots.probe_profile(report)"
        )
    return meta, [s for s in steps if s.get("type", "step") == "step"]


def layer_names(meta: dict[str, Any], steps: Sequence[dict[str, Any]] = (), key: str = "grad_norm") -> list[str]:
    """Layers in execution order (from meta), then any other names found under ``key`` in steps."""
    return _names([layer["name"] for layer in meta.get("layers", [])], steps, key)


def site_names(meta: dict[str, Any], steps: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Activation sites in execution order (from meta), then any others found in ``act``."""
    return _names([a["name"] for a in meta.get("activations", [])], steps, "act")


def _names(names: list[str], steps: Sequence[dict[str, Any]], key: str) -> list[str]:
    seen = set(names)
    for s in steps:
        for name in s.get(key) or {}:
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def matrix(steps: Sequence[dict[str, Any]], key: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer series of ``key`` over the steps that carry it.

    Returns ``(step_ids, values, nonfinite)``: values is ``len(names) x len(step_ids)`` with nan
    where nothing was recorded (null or absent), nonfinite is True where a NaN/Inf was recorded.

    Example:
        >>> ids, v, bad = matrix([{"step": 3, "g": {"a": "nan", "b": None}}], "g", ["a", "b"])
        >>> ids.tolist(), bad.tolist()
        ([3], [[True], [False]])
    """
    rows = [s for s in steps if isinstance(s.get(key), dict)]
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    values = np.full((len(names), len(rows)), np.nan)
    bad = np.zeros((len(names), len(rows)), dtype=bool)
    for j, s in enumerate(rows):
        d = s[key]
        for i, name in enumerate(names):
            v = d.get(name)
            if _is_nonfinite(v):
                bad[i, j] = True
            else:
                values[i, j] = _num(v)
    return ids, values, bad


def _pick_steps(ids: np.ndarray, steps: int | Iterable[int] | None, n: int = 5) -> list[int]:
    """Column indices for the requested step numbers (default: n evenly spaced, first and last)."""
    if len(ids) == 0:
        return []
    if steps is None:
        return sorted(set(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int).tolist()))
    wanted = [steps] if isinstance(steps, int) else list(steps)
    cols = [int(np.argmin(np.abs(ids - s))) for s in wanted]
    missing = [s for s, c in zip(wanted, cols) if ids[c] != s]
    if missing:
        raise InputError(f"steps {missing} are not in the run (recorded: {ids.min():.0f}..{ids.max():.0f})")
    return cols


def _size(inches: float, least: float, most: float = 16.0) -> float:
    """A figure side that grows with the number of layers, within [least, most] inches."""
    return min(max(inches, least), most)


def _empty(title: str, why: str) -> Figure:
    fig = Figure(figsize=(7, 2.5))
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", transform=ax.transAxes, color="0.4")
    return fig


def _layer_axis(ax: Any, names: Sequence[str], max_labels: int = 30) -> None:
    every = max(1, math.ceil(len(names) / max_labels))
    ax.set_xticks(range(0, len(names), every), [_short(n) for n in names[::every]], rotation=90, fontsize=7)
    ax.set_xlim(-0.5, len(names) - 0.5)


def _short(name: str, keep: int = 24) -> str:
    """A layer name fit for a tick label: "<model>" for the root, long names cut in the middle."""
    name = name or "<model>"
    return name if len(name) <= keep else name[: keep // 2 - 1] + "…" + name[-(keep // 2) :]


def _profile(source: Any, key: str, steps: Any, title: str, ylabel: str, what: str) -> Figure:
    """Shared body of gradient_flow / update_ratio: one log-scale line per chosen step."""
    meta, recs = as_run(source)
    names = layer_names(meta, recs, key)
    ids, values, bad = matrix(recs, key, names)
    if not len(ids) or not names:
        return _empty(title, f"no {what} recorded in this run")
    cols = _pick_steps(ids, steps)
    fig = Figure(figsize=(_size(0.25 * len(names), 7), 4.2), layout="constrained")
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
        ax.scatter(x[nonfinite], np.full(nonfinite.sum(), 0.97), marker="v", color=_NONFINITE,
                   transform=trans, zorder=5, label="NaN/Inf")
    if nothing.any():
        ax.scatter(x[nothing], np.full(nothing.sum(), 0.03), marker="x", color="0.45",
                   transform=trans, zorder=5, label="none (frozen / zero)")
    _layer_axis(ax, names)
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return fig


# ----------------------------------------------------------------------------- figures


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
        return _empty(title, "no gradient norms recorded in this run")
    k = max(1, math.ceil(len(ids) / max_steps))
    if k > 1:
        n = len(ids) // k * k
        ids, values = ids[:n:k], values[:, :n:k]
        bad = bad[:, :n].reshape(len(names), -1, k).any(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.log10(np.where(values > 0, values, np.nan))
    fig = Figure(figsize=(8, _size(0.22 * len(names) + 1.2, 3)), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["viridis"].with_extremes(bad=_MISSING)
    extent = (-0.5, len(ids) - 0.5, len(names) - 0.5, -0.5)
    im = ax.imshow(np.ma.masked_invalid(logv), aspect="auto", interpolation="nearest", cmap=cmap,
                   extent=extent)
    if bad.any():
        ax.imshow(np.ma.masked_where(~bad, bad.astype(float)), aspect="auto", interpolation="nearest",
                  cmap=ListedColormap([_NONFINITE]), extent=extent)
    fig.colorbar(im, ax=ax, label="log10 ‖grad‖₂")
    every = max(1, math.ceil(len(names) / 40))
    ax.set_yticks(range(0, len(names), every), [_short(n) for n in names[::every]], fontsize=7)
    ticks = np.linspace(0, len(ids) - 1, min(8, len(ids))).round().astype(int)
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{ids[t]:.0f}" for t in ticks])
    ax.set_xlabel("step")
    ax.set_ylabel("layer (input at top)")
    ax.set_title(title + (" (grey: no gradient, red: NaN/Inf)" if bad.any() or np.isnan(logv).any() else ""),
                 fontsize=10)
    return fig


def activation_histograms(source: Report | Run, sites: Sequence[str] | None = None, bins: int = 48,
                          max_sites: int = 8) -> Figure:
    """Per activation site, the distribution of its outputs over training (step x value, colour = density).

    In the style of fastai's "colorful dimension" plot, with the value axis spanning negative
    values too (a line marks zero). Uses recorded histograms (``act[site]["hist"]`` =
    ``{"lo", "hi", "counts"}``) where present; otherwise the density is drawn from the recorded
    statistics, and the title says so: a normal distribution with the recorded mean and std,
    cut to the activation's output range, plus the recorded fraction of exact zeros at 0.

    Args:
        sites: activation site names (default: up to ``max_sites`` evenly spread over depth).

    Example:
        >>> fig = activation_histograms(w.report())  # doctest: +SKIP
    """
    meta, recs = as_run(source)
    rows = [s for s in recs if isinstance(s.get("act"), dict)]
    all_sites = site_names(meta, rows)
    title = "activation distributions over training"
    if not rows or not all_sites:
        return _empty(title, "no activation statistics recorded in this run")
    if sites is None:
        idx = np.linspace(0, len(all_sites) - 1, min(max_sites, len(all_sites))).round().astype(int)
        sites = [all_sites[i] for i in sorted(set(idx.tolist()))]
    unknown = [s for s in sites if s not in all_sites]
    if unknown:
        raise InputError(f"unknown activation sites {unknown}; recorded: {all_sites}")
    ids = [s.get("step", i) for i, s in enumerate(rows)]
    fig = Figure(figsize=(8, 1.1 * len(sites) + 0.8), layout="constrained")
    axes = fig.subplots(len(sites), 1, squeeze=False, sharex=True)[:, 0]
    approximated = False
    for ax, site in zip(axes, sites):
        img, lo, hi, approx = _density(rows, site, bins, _bounds(meta, site))
        approximated |= approx
        ax.imshow(np.log1p(img), aspect="auto", origin="lower", cmap="magma", interpolation="nearest",
                  extent=(-0.5, len(ids) - 0.5, lo, hi))
        if lo < 0 < hi:
            ax.axhline(0, color="w", lw=0.6, alpha=0.7)
        ax.set_ylabel(_short(site), fontsize=7, rotation=0, ha="right", va="center")
        ax.tick_params(labelsize=7)
    ticks = np.linspace(0, len(ids) - 1, min(8, len(ids))).round().astype(int)
    axes[-1].set_xticks(ticks)
    axes[-1].set_xticklabels([f"{ids[t]:.0f}" for t in ticks])
    axes[-1].set_xlabel("step (sampled)")
    fig.suptitle(title + (" (approximated from recorded mean/std)" if approximated else ""), fontsize=10)
    return fig


def _density(rows: Sequence[dict[str, Any]], site: str, bins: int,
             bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[np.ndarray, float, float, bool]:
    """bins x steps density image for one site, its value range, and whether it is approximated."""
    stats = [(r.get("act") or {}).get(site) or {} for r in rows]
    if any(stats) and all(isinstance(s.get("hist"), dict) for s in stats if s):
        los = [_num(s["hist"].get("lo")) for s in stats if s]
        his = [_num(s["hist"].get("hi")) for s in stats if s]
        lo, hi = float(np.nanmin(los)), float(np.nanmax(his))
        edges = np.linspace(lo, hi, bins + 1)
        img = np.zeros((bins, len(stats)))
        for j, s in enumerate(stats):
            if not s:
                continue
            counts = np.nan_to_num(np.asarray([_num(c) for c in s["hist"]["counts"]]))
            src = np.linspace(_num(s["hist"]["lo"]), _num(s["hist"]["hi"]), len(counts) + 1)
            centers = (src[:-1] + src[1:]) / 2
            img[:, j], _ = np.histogram(centers, bins=edges, weights=counts / max(counts.sum(), 1))
        return img, lo, hi, False
    mean = np.array([_num(s.get("mean")) for s in stats])
    std = np.array([_num(s.get("std")) for s in stats])
    ok = np.isfinite(mean) & np.isfinite(std)
    if not ok.any():
        return np.zeros((bins, len(stats))), -1.0, 1.0, True
    lower, upper = bounds
    lo = max(float(np.min(mean[ok] - 3 * std[ok])), lower)
    hi = min(float(np.max(mean[ok] + 3 * std[ok])), upper)
    span = max(hi - lo, 1e-3)
    lo, hi = min(lo, -0.05 * span), max(hi, 0.05 * span)  # zero always on the axis
    centers = np.linspace(lo, hi, bins)
    width = np.maximum(std, (hi - lo) / bins)  # a point mass still shows as one bin
    with np.errstate(invalid="ignore", divide="ignore"):
        img = np.exp(-0.5 * ((centers[:, None] - mean[None]) / width[None]) ** 2)
        img[(centers < lower) | (centers > upper)] = 0.0  # truncated to the activation's range
        img = img / img.sum(axis=0, keepdims=True)
        zero = np.clip(np.nan_to_num(np.array([_num(s.get("zero_frac")) for s in stats])), 0, 1)
        img *= 1 - zero  # the recorded exact zeros (ReLU) are a point mass at 0
        img[np.argmin(np.abs(centers))] += zero
    return np.nan_to_num(img), lo, hi, True


#: output range of common activations (lower, upper), to truncate the mean/std approximation
_BOUNDS = {"sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0), "hardtanh": (-1.0, 1.0),
           "softsign": (-1.0, 1.0), "relu": (0.0, math.inf), "relu6": (0.0, 6.0), "softplus": (0.0, math.inf)}


def _bounds(meta: dict[str, Any], site: str) -> tuple[float, float]:
    for a in meta.get("activations", []):
        if a.get("name") == site:
            return _BOUNDS.get(str(a.get("kind", "")).lower(), (-math.inf, math.inf))
    return -math.inf, math.inf


def dead_saturated(source: Report | Run, step: int | None = None) -> Figure:
    """Fraction of dead (ReLU family) and saturated (sigmoid/tanh family) units per activation site.

    Args:
        step: a sampled step number (default: the last step that recorded activation statistics).

    Example:
        >>> fig = dead_saturated(w.report())  # doctest: +SKIP
    """
    meta, recs = as_run(source)
    rows = [s for s in recs if isinstance(s.get("act"), dict)]
    title = "dead and saturated units by activation site"
    sites = site_names(meta, rows)
    if not rows or not sites:
        return _empty(title, "no activation statistics recorded in this run")
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    row = rows[_pick_steps(ids, step)[0] if step is not None else -1]
    x = np.arange(len(sites))
    fig = Figure(figsize=(_size(0.3 * len(sites), 7), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.4
    total = 0.0
    for off, key, color, label in ((-width / 2, "dead_frac", "tab:purple", "dead (never active)"),
                                   (width / 2, "sat_frac", "tab:orange", "saturated")):
        vals = np.nan_to_num(np.array([_num((row["act"].get(s) or {}).get(key)) for s in sites]))
        ax.bar(x + off, vals, width, color=color, label=label)
        total += vals.sum()
    if total == 0:
        ax.text(0.5, 0.5, "no dead or saturated units at this step", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    _layer_axis(ax, sites)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of units")
    ax.set_xlabel("activation site (input → output)")
    ax.set_title(f"{title} (step {row.get('step', '?')})")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def loss_curve(source: Report | Run, findings: Sequence[Finding] | None = None) -> Figure:
    """Training loss by step; NaN/Inf losses in red at the top, findings marked at their step.

    Args:
        findings: findings to mark (default: the report's own, when ``source`` is a Report).

    Example:
        >>> fig = loss_curve(w.report())  # doctest: +SKIP
    """
    meta, recs = as_run(source)
    if findings is None:
        findings = source.findings if isinstance(source, Report) else []
    rows = [s for s in recs if "loss" in s]
    title = "training loss"
    if not rows:
        return _empty(title, "no loss recorded in this run")
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    loss = np.array([_num(s.get("loss")) for s in rows])
    bad = np.array([_is_nonfinite(s.get("loss")) for s in rows])
    skipped = np.array([bool(s.get("skipped")) for s in rows])
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    smooth = _moving_average(loss, max(1, len(loss) // 50))
    ax.plot(ids, loss, lw=0.8, color="tab:blue", alpha=0.45 if smooth is not loss else 1.0, label="loss")
    if smooth is not loss:
        ax.plot(ids, smooth, lw=1.6, color="tab:blue", label="moving average")
    trans = ax.get_xaxis_transform()
    if bad.any():
        ax.scatter(ids[bad], np.full(bad.sum(), 0.97), marker="v", color=_NONFINITE, transform=trans,
                   zorder=5, label="NaN/Inf loss")
    if skipped.any():
        ax.scatter(ids[skipped], np.full(skipped.sum(), 0.03), marker="|", color="0.4", transform=trans,
                   label="skipped (AMP)")
    for n, f in enumerate(f for f in findings if f.step is not None):
        color = _SEVERITY_COLOR.get(f.severity, "0.3")
        ax.axvline(f.step, color=color, ls="--", lw=1)
        ax.text(f.step, 0.92 - 0.08 * (n % 10), f" {f.code}", color=color, transform=trans, fontsize=7,
                va="top", bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    return fig


def _moving_average(y: np.ndarray, k: int) -> np.ndarray:
    """Trailing mean over ``k`` points, NaN-aware; ``y`` itself when k == 1."""
    if k <= 1:
        return y
    ok = np.isfinite(y)
    sums = np.convolve(np.where(ok, y, 0.0), np.ones(k), mode="full")[: len(y)]
    counts = np.convolve(ok.astype(float), np.ones(k), mode="full")[: len(y)]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def probe_profile(report: Report) -> Figure:
    """Per-layer profile of a check report's init probe (log scale), and per time step if measured.

    Reads ``report.data["probe"]`` (``graddoctor.measure.probe.ProbeResult.to_dict()``): every numeric
    list with one value per layer (``grad_rms``, ``act_var``) is drawn against the layers, and
    ``time_grad`` (norm of dL/dx_t for sequence models) in a second panel.

    Example:
        >>> fig = probe_profile(gd.check(model, x))  # doctest: +SKIP
    """
    probe = report.data.get("probe") if isinstance(report, Report) else None
    title = "init probe: per-layer profile"
    if not isinstance(probe, dict) or not probe.get("layers"):
        return _empty(title, "this report holds no probe profile (data['probe'])")
    names = list(probe["layers"])
    series = {k: np.array([_num(v) for v in vals]) for k, vals in probe.items()
              if k not in ("layers", "time_grad") and isinstance(vals, list) and len(vals) == len(names)
              and all(v is None or isinstance(v, (int, float, str)) and not _is_text(v) for v in vals)}
    time_grad = probe.get("time_grad")
    panels = 2 if isinstance(time_grad, list) and time_grad else 1
    fig = Figure(figsize=(_size(0.25 * len(names), 7), 4.0 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    ax = axes[0]
    ax.set_yscale("log")
    for k, (key, y) in enumerate(series.items()):
        y = np.where(y > 0, y, np.nan)
        if np.isfinite(y).any():
            ax.plot(np.arange(len(names)), y, marker="o", ms=3, lw=1.2, color=f"C{k}", label=key)
    _layer_axis(ax, names)
    ax.set_xlabel("layer (input → output)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    if panels == 2:
        y = np.array([_num(v) for v in time_grad])
        ax2 = axes[1]
        ax2.set_yscale("log")
        ax2.plot(np.arange(len(y)), np.where(y > 0, y, np.nan), color="C3", lw=1.2)
        ax2.set_xlabel("time step t")
        ax2.set_ylabel("‖dL/dx_t‖")
        ax2.set_title("gradient reaching each time step")
        ax2.grid(True, alpha=0.3)
    return fig


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and not _is_nonfinite(v)


#: figure name -> function, in the order a report shows them
WATCH_FIGURES = {
    "loss_curve": loss_curve,
    "gradient_flow": gradient_flow,
    "grad_heatmap": grad_heatmap,
    "update_ratio": update_ratio,
    "activation_histograms": activation_histograms,
    "dead_saturated": dead_saturated,
}


def figures(report: Report) -> dict[str, Figure]:
    """Every figure that applies to a report: the watch figures for a run, the probe profile for a check.

    Example:
        >>> sorted(figures(w.report()))  # doctest: +SKIP
        ['activation_histograms', 'dead_saturated', 'grad_heatmap', ...]
    """
    out: dict[str, Figure] = {}
    if isinstance(report.data.get("probe"), dict):
        out["probe_profile"] = probe_profile(report)
    if isinstance(report.data.get("meta"), dict) and isinstance(report.data.get("steps"), list):
        for name, fn in WATCH_FIGURES.items():
            out[name] = fn(report)
    return out


def to_png(fig: Figure, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (Agg canvas).

    Example:
        >>> to_png(gradient_flow(run))[:4]  # doctest: +SKIP
        b'\\x89PNG'
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
