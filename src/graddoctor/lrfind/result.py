"""LRFindResult: the range-test curve, the suggestion and what the gradients said."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from matplotlib.figure import Figure

from graddoctor.report import Finding, Report


@dataclass
class LRFindResult:
    """The outcome of ``gd.lr_find``: the curve, a suggested learning rate and the findings.

    Args:
        lrs: the learning rate of each step taken (the sweep may stop before ``end_lr``).
        losses: the raw loss of each step (one batch each).
        smoothed_losses: ``losses`` smoothed without lag (``suggest.zero_lag``): what the
            suggestions read and the plot shows.
        suggestion: the suggested learning rate; None when no learning rate in the range
            lowered the loss (see ``findings``) or the curve was too short.
        method: the method that chose ``suggestion`` ("minimum", "steepest" or "valley"; see
            ``graddoctor.lrfind.suggest``).
        suggestions: every method's pick, e.g. ``{"minimum": 0.1, "steepest": 0.6, "valley": 3e-4}``.
        diverged: the sweep stopped early because the loss blew up.
        findings: ``lr-insensitive`` when the loss barely moved over the sweep.
        gradients: the watch report of the sweep (per-layer gradient norms in ``data``), or None.

    Example:
        >>> r = LRFindResult([1e-3, 1e-2], [2.3, 2.0], [2.3, 2.1], 1e-3, "valley")
        >>> r.suggestion, r.method
        (0.001, 'valley')
    """

    lrs: list[float]
    losses: list[float]
    smoothed_losses: list[float]
    suggestion: float | None
    method: str
    suggestions: dict[str, float | None] = field(default_factory=dict)
    diverged: bool = False
    findings: list[Finding] = field(default_factory=list)
    gradients: Report | None = None

    @property
    def report(self) -> Report:
        """The findings as a ``Report(source="lr-find")``."""
        return Report(list(self.findings), source="lr-find",
                      data={"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion})

    def plot(self, path: str | os.PathLike | None = None) -> Figure:
        """Loss (raw and smoothed) against the learning rate on a log axis, the suggestion marked;
        below it, the first and last layers' gradient norms. Saved as PNG only when ``path`` is given.

        Example:
            >>> LRFindResult([1e-3, 1e-2], [2.3, 2.0], [2.3, 2.1], 1e-3, "valley").plot().axes[0].get_xscale()
            'log'
        """
        fig = Figure(figsize=(7, 5.5), layout="constrained")
        ax, gax = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
        ax.plot(self.lrs, self.losses, lw=0.8, alpha=0.4, color="tab:blue", label="loss")
        ax.plot(self.lrs, self.smoothed_losses, lw=1.8, color="tab:blue", label="smoothed")
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:green", ls="--",
                       label=f"suggestion {self.suggestion:.2g} ({self.method})")
        ax.set_xscale("log")
        ax.set_ylabel("loss")
        ax.set_title("learning-rate range test" + (": lr-insensitive" if self.findings else ""))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        for name, norms in _side_norms(self.gradients, len(self.lrs)).items():
            gax.plot(self.lrs[: len(norms)], norms, lw=1.2, label=name)
        gax.set_yscale("log")
        gax.set_xlabel("learning rate")
        gax.set_ylabel("gradient norm")
        if gax.lines:
            gax.legend(fontsize=7)
        if path is not None:
            fig.savefig(path, dpi=90)
        return fig

    def __str__(self) -> str:
        lines = [f"lr_find: {len(self.lrs)} steps, lr {self.lrs[0]:.1e} to {self.lrs[-1]:.1e}"
                 + (" (stopped: the loss diverged)" if self.diverged else "")]
        if self.findings:
            for f in self.findings:
                lines.append(f"  [{f.severity}] {f.code}: {f.message}")
                if f.remedies:
                    lines.append(f"      what to do: {', '.join(f.remedies)}")
            lines.append("  no learning rate to suggest: fix the finding above first")
        elif self.suggestion is None:
            lines.append("  no suggestion: the curve is too short, or its loss was lowest at the first rates "
                         "swept; raise num_steps, or start the sweep lower (start_lr)")
        else:
            others = ", ".join(f"{m} {v:.2g}" for m, v in self.suggestions.items()
                               if m != self.method and v is not None)
            lines.append(f"  suggested learning rate: {self.suggestion:.2g} ({self.method}"
                         + (f"; {others}" if others else "") + ")")
            lines.append(f"  what to do: set the optimizer's lr to {self.suggestion:.2g}, e.g. "
                         f"for g in opt.param_groups: g['lr'] = {self.suggestion:.2g}")
        return "\n".join(lines)


def _side_norms(gradients: Report | None, n: int) -> dict[str, list[float]]:
    """Per-step gradient norm of the first (input side) and last (output side) watched layer."""
    if gradients is None:
        return {}
    meta, steps = gradients.data.get("meta", {}), gradients.data.get("steps", [])
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    if not names:
        return {}
    out = {}
    for label, name in ((f"input side ({names[0]})", names[0]), (f"output side ({names[-1]})", names[-1])):
        vals = [(s.get("grad_norm") or {}).get(name) for s in steps[:n]]
        out[label] = [float(v) if isinstance(v, (int, float)) else math.nan for v in vals]
    return out


__all__ = ["LRFindResult"]
