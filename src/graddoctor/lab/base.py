"""The shape of a lab experiment: a claim from a paper, a setup, a numeric criterion.

An experiment's ``run(seed, settings)`` trains or probes small models and returns
plain numbers (floats, lists of floats). Its ``checks`` compare the mean of one
number over the seeds with the paper's threshold; ``verdict`` runs every seed
and reports mean, spread and pass/fail for each check.

Example:
    >>> from graddoctor.lab.base import Check, summarize
    >>> c = Check("ratio", "<", 1e-3, "first/last gradient ratio", "< 1e-3")
    >>> c.passes(summarize([1e-5, 2e-5, 3e-5]))
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

Numbers = dict[str, Any]
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def summarize(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation, min and max over seeds (non-finite values kept as inf/nan).

    Example:
        >>> summarize([1.0, 3.0])["mean"]
        2.0
    """
    a = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()),
                "max": float(a.max()), "n": len(values)}


def codes_note(runs: list[Numbers], configs: list[str], what: str = "graddoctor.measure.monitor.watcher") -> str:
    """One line: which finding codes ``what`` reported for each config, in how many seeds
    (from the ``codes_<config>`` lists of the runs).

    Example:
        >>> codes_note([{"codes_a": ["x"], "codes_b": []}], ["a", "b"])
        'graddoctor.measure.monitor.watcher findings per config (seeds): a: x (1/1); b: none'
    """
    parts = []
    for cfg in configs:
        counts: dict[str, int] = {}
        for r in runs:
            for code in r.get(f"codes_{cfg}", []):
                counts[code] = counts.get(code, 0) + 1
        text = ", ".join(f"{c} ({n}/{len(runs)})" for c, n in sorted(counts.items())) or "none"
        parts.append(f"{cfg}: {text}")
    return f"{what} findings per config (seeds): " + "; ".join(parts)


def plot_curves(ax: Any, runs: list[Numbers], configs: Sequence[str], label: str = "{}") -> None:
    """One line per configuration and seed from each run's ``curve_<config>`` [(step, value), ...].

    Seeds of one configuration share a colour; ``label`` formats the legend entry.
    """
    for i, cfg in enumerate(configs):
        for j, r in enumerate(runs):
            steps, values = zip(*r[f"curve_{cfg}"])
            ax.plot(steps, values, color=f"C{i}", alpha=0.8, label=label.format(cfg) if j == 0 else None)


@dataclass(frozen=True)
class Check:
    """One numeric pass criterion: ``mean over seeds of numbers[metric]  op  threshold``.

    ``claim`` says it in words; ``paper`` is the paper's number (or the issue's target)
    shown next to ours.
    """

    metric: str
    op: str
    threshold: float
    claim: str
    paper: str

    def passes(self, summary: dict[str, float]) -> bool:
        m = summary["mean"]
        return not math.isnan(m) and _OPS[self.op](m, self.threshold)


@dataclass
class Outcome:
    """What ``Experiment.verdict`` returns: per-seed numbers, summaries, check results."""

    name: str
    mode: str
    settings: dict[str, Any]
    seeds: list[int]
    runs: list[Numbers]
    summaries: dict[str, dict[str, float]]
    checks: list[dict[str, Any]]
    seconds: float
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = all(c["passed"] for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "settings": self.settings,
                "seeds": self.seeds, "runs": self.runs, "summaries": self.summaries,
                "checks": self.checks, "seconds": self.seconds, "passed": self.passed}


class Experiment:
    """Base class: subclasses set the class attributes and implement ``run`` and ``plot``."""

    name: ClassVar[str]
    claim: ClassVar[str]          # the claim, one sentence
    source: ClassVar[str]         # paper, table/figure
    setup: ClassVar[str]          # what we train, on what, how long
    quick: ClassVar[dict[str, Any]]
    full: ClassVar[dict[str, Any]]
    checks: ClassVar[list[Check]]

    def run(self, seed: int, settings: dict[str, Any]) -> Numbers:
        """One seed: train/probe and return plain numbers (scalars used by ``checks``)."""
        raise NotImplementedError

    def plot(self, runs: list[Numbers], settings: dict[str, Any], fig: Any) -> None:
        """Draw the experiment's figure on the matplotlib ``fig`` from the per-seed numbers."""
        raise NotImplementedError

    def notes(self, runs: list[Numbers]) -> list[str]:
        """Extra lines for RESULTS.md (e.g. what graddoctor's own rules said); none by default."""
        return []

    def settings(self, mode: str = "quick", **overrides: Any) -> dict[str, Any]:
        """The settings of ``mode`` ("quick" or "full") with ``overrides`` applied."""
        if mode not in ("quick", "full"):
            from graddoctor.errors import InputError

            raise InputError(f"unknown mode {mode!r}: use 'quick' or 'full'")
        return {**(self.quick if mode == "quick" else self.full), **overrides}

    def verdict(self, seeds: list[int], settings: dict[str, Any], mode: str = "quick",
                progress: Callable[[int], None] | None = None) -> Outcome:
        """Run every seed (torch/numpy global RNGs seeded per seed, restored afterwards) and
        evaluate the checks."""
        t0 = time.perf_counter()
        runs = []
        np_state = np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                for i, seed in enumerate(seeds):
                    torch.manual_seed(seed)
                    np.random.seed(seed)
                    runs.append(self.run(seed, settings))
                    if progress is not None:
                        progress(i + 1)
        finally:
            np.random.set_state(np_state)
        scalars = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float))})
        summaries = {k: summarize([float(r[k]) for r in runs]) for k in scalars}
        checks = [{"metric": c.metric, "op": c.op, "threshold": c.threshold, "claim": c.claim,
                   "paper": c.paper, **summaries[c.metric], "passed": c.passes(summaries[c.metric])}
                  for c in self.checks]
        return Outcome(self.name, mode, settings, list(seeds), runs, summaries, checks,
                       time.perf_counter() - t0)
