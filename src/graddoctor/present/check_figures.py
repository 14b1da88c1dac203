"""Figures of a check report: the init probe's per-layer (and per-time-step) profile.

Example:
    >>> from graddoctor.report import Report
    >>> probe_profile(Report([], "check", {})).axes[0].get_title()
    'init probe: per-layer profile'
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from graddoctor.present.figure_common import empty_figure, figure_side, layer_axis
from graddoctor.report import Report
from graddoctor.runlog import as_float, is_nonfinite


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
        return empty_figure(title, "this report holds no probe profile (data['probe'])")
    names = list(probe["layers"])
    series = {k: np.array([as_float(v) for v in vals]) for k, vals in probe.items()
              if k not in ("layers", "time_grad") and isinstance(vals, list) and len(vals) == len(names)
              and all(v is None or isinstance(v, (int, float, str)) and not _is_text(v) for v in vals)}
    time_grad = probe.get("time_grad")
    panels = 2 if isinstance(time_grad, list) and time_grad else 1
    fig = Figure(figsize=(figure_side(0.25 * len(names), 7), 4.0 * panels), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    ax = axes[0]
    ax.set_yscale("log")
    for k, (key, y) in enumerate(series.items()):
        y = np.where(y > 0, y, np.nan)
        if np.isfinite(y).any():
            ax.plot(np.arange(len(names)), y, marker="o", ms=3, lw=1.2, color=f"C{k}", label=key)
    layer_axis(ax, names)
    ax.set_xlabel("layer (input → output)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    if panels == 2:
        y = np.array([as_float(v) for v in time_grad])
        ax2 = axes[1]
        ax2.set_yscale("log")
        ax2.plot(np.arange(len(y)), np.where(y > 0, y, np.nan), color="C3", lw=1.2)
        ax2.set_xlabel("time step t")
        ax2.set_ylabel("‖dL/dx_t‖")
        ax2.set_title("gradient reaching each time step")
        ax2.grid(True, alpha=0.3)
    return fig


def _is_text(v: Any) -> bool:
    return isinstance(v, str) and not is_nonfinite(v)
