"""Run lab experiments and write ``results.json``, ``RESULTS.md`` and one PNG figure each.

Example:
    >>> from graddoctor.lab.runner import fmt
    >>> fmt(0.000012345), fmt(0.5)
    ('1.23e-05', '0.5')
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graddoctor import __version__
from graddoctor.lab import get
from graddoctor.lab.base import Outcome

_OP_TEXT = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}


def fmt(x: float) -> str:
    """A number in 3 significant digits, scientific below 1e-3 or above 1e4."""
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
        return f"{x:.2e}"
    return f"{x:.3g}"


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return text.replace("|", "\\|")


def _rounded(x: Any) -> Any:
    """Floats to 6 significant digits, recursively (keeps results.json small)."""
    if isinstance(x, float):
        return float(f"{x:.6g}") if math.isfinite(x) else x
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def versions() -> dict[str, Any]:
    """Software and machine the numbers came from."""
    return {"graddoctor": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                      time.gmtime())}


def run_experiments(names: list[str], mode: str = "quick", seeds: int = 3,
                    out: str | Path | None = None,
                    on_progress: Callable[[str, int, int], None] | None = None,
                    threads: int | None = None, **overrides: Any) -> list[Outcome]:
    """Run ``names`` over seeds 0..seeds-1; write the results into ``out`` when given.

    ``on_progress(name, done, total)`` is called after each seed. ``threads``: torch
    intra-op threads while running (tiny models are fastest on 1), restored afterwards.
    """
    outcomes = []
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for name in names:
            exp = get(name)
            settings = exp.settings(mode, **overrides)
            cb = (lambda i, n=name: on_progress(n, i, seeds)) if on_progress else None
            outcomes.append(exp.verdict(list(range(seeds)), settings, mode, progress=cb))
            if out is not None:
                figure(outcomes[-1], Path(out))
                write_results(outcomes, Path(out))  # partial results survive an interruption
    finally:
        torch.set_num_threads(saved)
    return outcomes


def figure(outcome: Outcome, out: Path) -> Path:
    """Draw the experiment's figure into ``out/<name>.png`` (small PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(7, 3.2), dpi=90)
    try:
        get(outcome.name).plot(outcome.runs, outcome.settings, fig)
        verdict = "PASS" if outcome.passed else "FAIL"
        fig.suptitle(f"{outcome.name} ({outcome.mode}, {len(outcome.seeds)} seeds): {verdict}",
                     fontsize=10)
        fig.tight_layout()
        path = out / f"{outcome.name}.png"
        fig.savefig(path)
    finally:
        plt.close(fig)
    return path


def write_results(outcomes: list[Outcome], out: Path) -> None:
    """Write ``results.json`` (every number) and ``RESULTS.md`` (the table) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"versions": versions(), "experiments": [_rounded(o.to_dict()) for o in outcomes]}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    (out / "RESULTS.md").write_text(markdown(outcomes, data["versions"]))


def markdown(outcomes: list[Outcome], vers: dict[str, Any]) -> str:
    """The RESULTS.md text: one table row per check, then one section per experiment."""
    n_pass = sum(o.passed for o in outcomes)
    lines = [
        "# graddoctor lab results", "",
        f"{n_pass}/{len(outcomes)} experiments pass. Mode `{outcomes[0].mode if outcomes else '-'}`, "
        f"torch {vers['torch']}, {vers['threads']} threads, {vers['date']}. "
        "Ours = mean ± std over seeds [min, max]; the check is on the mean.", "",
        "| experiment | claim | paper / target | ours | pass |", "|---|---|---|---|---|",
    ]
    for o in outcomes:
        for c in o.checks:
            ours = f"{fmt(c['mean'])} ± {fmt(c['std'])} [{fmt(c['min'])}, {fmt(c['max'])}]"
            target = f"{c['paper']} (check: {_OP_TEXT[c['op']]} {fmt(c['threshold'])})"
            lines.append(f"| {o.name} | {_cell(c['claim'])} | {_cell(target)} | {ours} | "
                         f"{'pass' if c['passed'] else '**FAIL**'} |")
    lines.append("")
    for o in outcomes:
        exp = get(o.name)
        settings = ", ".join(f"{k}={v}" for k, v in o.settings.items())
        lines += [f"## {o.name}: {'pass' if o.passed else 'FAIL'}", "",
                  f"- Claim: {exp.claim}", f"- Source: {exp.source}", f"- Setup: {exp.setup}",
                  f"- Settings: {settings}; seeds {o.seeds}; {o.seconds:.1f} s",
                  *[f"- {line}" for line in exp.notes(o.runs)], "",
                  f"![{o.name}]({o.name}.png)", ""]
    return "\n".join(lines)
