"""Figures of a watch run's activation statistics: output distributions, dead and saturated units.

Example:
    >>> meta = {"activations": [{"name": "1", "kind": "relu"}]}
    >>> steps = [{"type": "step", "step": 5, "act": {"1": {"dead_frac": 0.5, "sat_frac": None}}}]
    >>> dead_saturated((meta, steps)).axes[0].get_title()
    'dead and saturated units by activation site (step 5)'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from graddoctor import kinds
from graddoctor.errors import InputError
from graddoctor.present.figure_common import empty_figure, figure_side, layer_axis, short_name
from graddoctor.present.run_records import Run, as_run, pick_steps, site_names
from graddoctor.report import Report
from graddoctor.runlog import as_float


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
        return empty_figure(title, "no activation statistics recorded in this run")
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
        ax.set_ylabel(short_name(site), fontsize=7, rotation=0, ha="right", va="center")
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
        los = [as_float(s["hist"].get("lo")) for s in stats if s]
        his = [as_float(s["hist"].get("hi")) for s in stats if s]
        lo, hi = float(np.nanmin(los)), float(np.nanmax(his))
        edges = np.linspace(lo, hi, bins + 1)
        img = np.zeros((bins, len(stats)))
        for j, s in enumerate(stats):
            if not s:
                continue
            counts = np.nan_to_num(np.asarray([as_float(c) for c in s["hist"]["counts"]]))
            src = np.linspace(as_float(s["hist"]["lo"]), as_float(s["hist"]["hi"]), len(counts) + 1)
            centers = (src[:-1] + src[1:]) / 2
            img[:, j], _ = np.histogram(centers, bins=edges, weights=counts / max(counts.sum(), 1))
        return img, lo, hi, False
    mean = np.array([as_float(s.get("mean")) for s in stats])
    std = np.array([as_float(s.get("std")) for s in stats])
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
        zero = np.clip(np.nan_to_num(np.array([as_float(s.get("zero_frac")) for s in stats])), 0, 1)
        img *= 1 - zero  # the recorded exact zeros (ReLU) are a point mass at 0
        img[np.argmin(np.abs(centers))] += zero
    return np.nan_to_num(img), lo, hi, True


def _bounds(meta: dict[str, Any], site: str) -> tuple[float, float]:
    """Output range of the site's activation kind (``kinds.bounds``), to truncate the approximation."""
    for a in meta.get("activations", []):
        if a.get("name") == site:
            return kinds.bounds(str(a.get("kind", "")).lower())
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
        return empty_figure(title, "no activation statistics recorded in this run")
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    row = rows[pick_steps(ids, step)[0] if step is not None else -1]
    x = np.arange(len(sites))
    fig = Figure(figsize=(figure_side(0.3 * len(sites), 7), 3.8), layout="constrained")
    ax = fig.add_subplot()
    width = 0.4
    total = 0.0
    for off, key, color, label in ((-width / 2, "dead_frac", "tab:purple", "dead (never active)"),
                                   (width / 2, "sat_frac", "tab:orange", "saturated")):
        vals = np.nan_to_num(np.array([as_float((row["act"].get(s) or {}).get(key)) for s in sites]))
        ax.bar(x + off, vals, width, color=color, label=label)
        total += vals.sum()
    if total == 0:
        ax.text(0.5, 0.5, "no dead or saturated units at this step", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    layer_axis(ax, sites)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction of units")
    ax.set_xlabel("activation site (input → output)")
    ax.set_title(f"{title} (step {row.get('step', '?')})")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    return fig
