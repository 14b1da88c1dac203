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
from graddoctor.errors import InputError
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


def _run_one(name: str, mode: str, seed_list: list[int], threads: int | None,
             overrides: dict[str, Any]) -> Outcome:
    """One experiment in a worker process (``jobs > 1``)."""
    if threads is not None:
        torch.set_num_threads(threads)
    exp = get(name)
    return exp.verdict(seed_list, exp.settings(mode, **overrides), mode)


def run_experiments(names: list[str], mode: str = "quick", seeds: int = 3,
                    out: str | Path | None = None,
                    on_progress: Callable[[str, int, int], None] | None = None,
                    threads: int | None = None, seed_start: int = 0, jobs: int = 1,
                    **overrides: Any) -> list[Outcome]:
    """Run ``names`` over seeds ``seed_start`` .. ``seed_start+seeds-1``; write the results
    into ``out`` when given.

    ``on_progress(name, done, total)`` is called after each seed (after each experiment when
    ``jobs > 1``). ``threads``: torch intra-op threads while running (tiny models are fastest
    on 1), restored afterwards. ``jobs``: experiments run in that many worker processes at
    once (one core each); the results are the same as with ``jobs=1``, in ``names`` order.
    """
    seed_list = list(range(seed_start, seed_start + seeds))
    for name in names:
        get(name).settings(mode, **overrides)  # bad names or modes fail before anything runs
    outcomes: list[Outcome] = []
    t0 = time.perf_counter()

    def done(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if out is not None:
            figure(outcome, Path(out))
            order = {n: i for i, n in enumerate(names)}
            write_results(sorted(outcomes, key=lambda o: order[o.name]), Path(out),
                          {"elapsed_s": time.perf_counter() - t0, "jobs": jobs})

    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        longest_first = sorted(names, key=lambda n: -get(n).cost_s)  # shortest makespan
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run_one, n, mode, seed_list, threads, overrides): n
                       for n in longest_first}
            for fut in as_completed(futures):
                done(fut.result())
                if on_progress:
                    on_progress(futures[fut], seeds, seeds)
        order = {n: i for i, n in enumerate(names)}
        return sorted(outcomes, key=lambda o: order[o.name])
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for name in names:
            exp = get(name)
            settings = exp.settings(mode, **overrides)
            cb = (lambda i, n=name: on_progress(n, i, seeds)) if on_progress else None
            done(exp.verdict(seed_list, settings, mode, progress=cb))
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


def write_results(outcomes: list[Outcome], out: Path, run: dict[str, Any] | None = None) -> None:
    """Write ``results.json`` (every number) and ``RESULTS.md`` (the table) into ``out``;
    ``run`` holds the whole run's ``elapsed_s`` (wall clock) and ``jobs``. Experiments an earlier
    run stored there stay (before this run's); one run again is replaced."""
    out.mkdir(parents=True, exist_ok=True)
    redone = {o.name for o in outcomes}
    kept = [e for e in _earlier(out / "results.json") if e.get("name") not in redone]
    data = {"versions": versions(), "run": _rounded(run or {}),
            "experiments": kept + [_rounded(o.to_dict()) for o in outcomes]}
    (out / "results.json").write_text(json.dumps(data, indent=1, default=float) + "\n")
    (out / "RESULTS.md").write_text(markdown([*map(_outcome, kept), *outcomes], data["versions"], run))


def _earlier(path: Path) -> list[dict]:
    """The experiments an earlier run stored in ``path`` (none when it is missing or unreadable):
    running one experiment into a folder keeps the others' numbers."""
    try:
        data = json.loads(path.read_text())
        found = data.get("experiments") if isinstance(data, dict) else None
        return [e for e in found if isinstance(e, dict) and _outcome(e)] if isinstance(found, list) else []
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return []


def _outcome(e: dict) -> Outcome:
    """An ``Outcome`` from its stored dict (``Outcome.to_dict``)."""
    return Outcome(e["name"], e["mode"], e["settings"], e["seeds"], e["runs"], e["summaries"],
                   e["checks"], e["seconds"], e.get("cpu_seconds", 0.0))


def timing_line(outcomes: list[Outcome], run: dict[str, Any] | None = None) -> str:
    """The run's time: elapsed wall clock (when known) and the per-experiment sums.

    Example:
        >>> o = Outcome("x", "quick", {}, [0], [{}], {}, [], 10.0, 4.0)
        >>> timing_line([o, o], {"elapsed_s": 12.0, "jobs": 2})
        '12 s elapsed wall with 2 job(s); per experiment summed: 20 s wall, 8 s CPU'
    """
    wall = sum(o.seconds for o in outcomes)
    cpu = sum(o.cpu_seconds for o in outcomes)
    head = (f"{run['elapsed_s']:.0f} s elapsed wall with {run.get('jobs', 1)} job(s); "
            if run and "elapsed_s" in run else "")
    return f"{head}per experiment summed: {wall:.0f} s wall, {cpu:.0f} s CPU"


def markdown(outcomes: list[Outcome], vers: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """The RESULTS.md text: one table row per check, the time of each experiment, then one
    section per experiment."""
    n_pass = sum(o.passed for o in outcomes)
    seeds = outcomes[0].seeds if outcomes else []
    lines = [
        "# graddoctor lab results", "",
        f"{n_pass}/{len(outcomes)} experiments pass on every seed. Mode "
        f"`{outcomes[0].mode if outcomes else '-'}`, seeds {seeds}, torch {vers['torch']}, "
        f"{vers['threads']} thread(s), {vers['date']}. Time: {timing_line(outcomes, run)} "
        f"(the machine is shared: wall time depends on the load, CPU time much less).", "",
        "How to read a row: **paper** is the paper's own number for the quantity (its unit may "
        "differ from ours: the note under each experiment says where); **check** is our "
        "criterion, applied to every seed on its own; **ours** is mean [min, max] over seeds; "
        "**seeds** counts the seeds that pass. A row passes only if every seed passes.", "",
        "| experiment | what we measure | paper | check (each seed) | ours | seeds | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for c in o.checks:
            ours = f"{fmt(c['mean'])} [{fmt(c['min'])}, {fmt(c['max'])}]"
            n = len(c.get("per_seed", o.seeds))
            lines.append(f"| {o.name} | {_cell(c['claim'])} | {_cell(c['paper'])} | "
                         f"{_OP_TEXT[c['op']]} {fmt(c['threshold'])} | {ours} | "
                         f"{c.get('seeds_passed', n if c['passed'] else 0)}/{n} | "
                         f"{'pass' if c['passed'] else '**FAIL**'} |")
    lines += ["", "| experiment | wall s | CPU s |", "|---|---|---|"]
    lines += [f"| {o.name} | {o.seconds:.1f} | {o.cpu_seconds:.1f} |" for o in outcomes]
    lines.append(f"| total | {sum(o.seconds for o in outcomes):.1f} | "
                 f"{sum(o.cpu_seconds for o in outcomes):.1f} |")
    lines.append("")
    for o in outcomes:
        exp = get(o.name)
        settings = ", ".join(f"{k}={v}" for k, v in o.settings.items())
        lines += [f"## {o.name}: {'pass' if o.passed else 'FAIL'}", "",
                  f"- Claim: {exp.claim}", f"- Source: {exp.source}", f"- Setup: {exp.setup}",
                  *([f"- Scaled down: {exp.scaled}"] if getattr(exp, "scaled", "") else []),
                  *([f"- Why the criterion can fail: {exp.can_fail}"]
                    if getattr(exp, "can_fail", "") else []),
                  f"- Settings: {settings}; seeds {o.seeds}; {o.seconds:.1f} s wall, "
                  f"{o.cpu_seconds:.1f} s CPU",
                  *[f"- {line}" for line in exp.notes(o.runs)], "",
                  f"![{o.name}]({o.name}.png)", ""]
    return "\n".join(lines)


def _stored(path: Path, out: Path) -> dict:
    """The parsed ``results.json`` of a lab run, or an ``InputError`` that says how to make one."""
    again = f"run `graddoctor lab run all --out {out}` (or one experiment) to write it"
    if not path.is_file():
        raise InputError(f"{path} not found: render rewrites RESULTS.md from a lab run's results - {again}")
    try:
        data = json.loads(path.read_text())
        ok = isinstance(data, dict) and isinstance(data.get("experiments"), list) and "versions" in data
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} cannot be read as JSON ({e}) - {again}") from None
    if not ok:
        raise InputError(f"{path} is not a lab results file (no 'experiments' list) - {again}")
    return data


def rerender(out: str | Path) -> list[Outcome]:
    """Rewrite ``out/RESULTS.md`` from ``out/results.json`` without rerunning anything: the
    numbers and verdicts are the stored ones; the texts (claim, paper number, setup notes)
    come from the current experiment classes, matched by metric."""
    out = Path(out)
    data = _stored(out / "results.json", out)
    outcomes = []
    for e in data["experiments"]:
        texts = {c.metric: c for c in get(e["name"]).checks}
        for c in e["checks"]:
            if c["metric"] in texts:
                c["claim"], c["paper"] = texts[c["metric"]].claim, texts[c["metric"]].paper
        outcomes.append(_outcome(e))
    (out / "RESULTS.md").write_text(markdown(outcomes, data["versions"], data.get("run")))
    return outcomes
