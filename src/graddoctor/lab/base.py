"""The shape of a lab experiment: a claim from a paper, a setup, a numeric criterion.

An experiment's ``run(seed, settings)`` trains or probes small models and returns
plain numbers (floats, lists of floats). Each of its ``checks`` is judged on every
seed on its own (``number op threshold``); a check passes only if every seed passes.
``verdict`` runs every seed and reports, per check, the seeds passing, the mean,
spread and range, next to the paper's own number.

Example:
    >>> from graddoctor.lab.base import Check
    >>> c = Check("ratio", "<", 1e-3, "first/last gradient ratio", "0.25^19 = 3.6e-12")
    >>> c.seed_passes([1e-5, 2e-5, 3e-3])
    [True, True, False]
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


def codes_note(runs: list[Numbers], configs: list[str], what: str = "graddoctor.watch") -> str:
    """One line: which finding codes ``what`` reported for each config, in how many seeds
    (from the ``codes_<config>`` lists of the runs).

    Example:
        >>> codes_note([{"codes_a": ["x"], "codes_b": []}], ["a", "b"])
        'graddoctor.watch findings per config (seeds): a: x (1/1); b: none'
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
    """One numeric pass criterion, judged on every seed: ``numbers[metric]  op  threshold``.

    ``claim`` says what is measured; ``paper`` is the paper's own number for the same
    quantity (or, where the paper has none, says so), shown next to ours; the threshold
    is ours. A check passes only if every seed passes (a nan never passes).
    """

    metric: str
    op: str
    threshold: float
    claim: str
    paper: str

    def seed_passes(self, values: Sequence[float]) -> list[bool]:
        """Pass/fail of each seed's value."""
        return [not math.isnan(v) and _OPS[self.op](v, self.threshold) for v in values]

    def passes(self, summary: dict[str, float]) -> bool:
        """Whether the mean of a :func:`summarize` passes (kept for callers judging a mean)."""
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
    cpu_seconds: float = 0.0
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        self.passed = all(c["passed"] for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "settings": self.settings,
                "seeds": self.seeds, "runs": self.runs, "summaries": self.summaries,
                "checks": self.checks, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "passed": self.passed}


class Experiment:
    """Base class: subclasses set the class attributes and implement ``run`` and ``plot``."""

    name: ClassVar[str]
    claim: ClassVar[str]          # the claim, one sentence
    source: ClassVar[str]         # paper, table/figure
    setup: ClassVar[str]          # what we train, on what, how long
    scaled: ClassVar[str] = ""    # what was scaled down from the paper, and why
    can_fail: ClassVar[str] = ""  # how the criterion would fail if the effect did not exist
    #: CPU s of 3 quick seeds as measured; `--jobs` starts the longest first (unmeasured: first)
    cost_s: ClassVar[float] = 120.0
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
        judge every check on every seed."""
        t0, c0 = time.perf_counter(), time.process_time()
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
        checks = []
        for c in self.checks:
            values = [float(r[c.metric]) for r in runs]
            ok = c.seed_passes(values)
            checks.append({"metric": c.metric, "op": c.op, "threshold": c.threshold,
                           "claim": c.claim, "paper": c.paper, **summaries[c.metric],
                           "per_seed": values, "seeds_passed": sum(ok), "passed": all(ok)})
        return Outcome(self.name, mode, settings, list(seeds), runs, summaries, checks,
                       time.perf_counter() - t0, time.process_time() - c0)
