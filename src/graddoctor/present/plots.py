"""Figures for watch runs and check reports: pure functions that return a matplotlib Figure.

Each function takes a watch ``Report`` (its ``data`` holds ``meta`` and ``steps``, see the run-log
format) or a ``(meta, steps)`` pair as returned by ``Watcher.records()`` / ``runlog.read_run``.
Figures are built without pyplot (headless Agg canvas, no global state): save them with
``fig.savefig(path)`` or show them in a notebook with ``display(fig)``.

This module is ``gd.plots``: it gathers the figures of :mod:`~graddoctor.present.run_figures`,
:mod:`~graddoctor.present.activation_figures` and :mod:`~graddoctor.present.check_figures`.

Example:
    >>> import graddoctor as gd
    >>> meta = {"layers": [{"name": "0"}, {"name": "2"}]}
    >>> steps = [{"type": "step", "step": 1, "loss": 2.3, "grad_norm": {"0": 1e-6, "2": 0.1}}]
    >>> fig = gd.plots.gradient_flow((meta, steps))
    >>> fig.axes[0].get_yscale()
    'log'
"""

from __future__ import annotations

from matplotlib.figure import Figure

from graddoctor.present.activation_figures import activation_histograms, dead_saturated
from graddoctor.present.check_figures import probe_profile
from graddoctor.present.figure_common import to_png
from graddoctor.present.run_figures import grad_heatmap, gradient_flow, loss_curve, update_ratio
from graddoctor.present.run_records import Run, as_run, layer_names, matrix, site_names
from graddoctor.report import Report

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


__all__ = [
    "WATCH_FIGURES", "Run", "activation_histograms", "as_run", "dead_saturated", "figures", "grad_heatmap",
    "gradient_flow", "layer_names", "loss_curve", "matrix", "probe_profile", "site_names", "to_png",
    "update_ratio",
]
