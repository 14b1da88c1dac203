"""``graddoctor lab``: list and run the reproduced experiments.

Example:
    graddoctor lab list
    graddoctor lab run gradient-decay --quick --seeds 3 --out lab-results
    graddoctor lab run all --quick --jobs 2 --out benchmarks/lab
    graddoctor lab run all --quick --seeds 5 --seed-start 10 --out held-out
"""

from __future__ import annotations

import time

import click


@click.group("lab")
def lab() -> None:
    """Reproduce classic vanishing-gradient results next to the paper's numbers."""


@lab.command("list")
def list_command() -> None:
    """List the experiments: name, source and claim."""
    from rich.console import Console
    from rich.table import Table

    from graddoctor import lab as lab_

    table = Table("name", "source", "claim", show_lines=False)
    for name in lab_.names():
        exp = lab_.get(name)
        table.add_row(name, exp.source, exp.claim)
    Console().print(table)


@lab.command("run")
@click.argument("name")
@click.option("--quick/--full", default=True, show_default=True,
              help="Quick settings (2 CPU cores, < 10 min in all) or full ones (longer "
                   "sequences, deeper nets: a long run; not calibrated on this machine).")
@click.option("--seeds", default=None, type=click.IntRange(1, 100),
              help="Seeds per experiment (S..S+N-1)  [default: 3 quick, 5 full].")
@click.option("--seed-start", default=0, show_default=True, type=click.IntRange(0, 10**6),
              help="First seed S (e.g. 10 for held-out seeds never used while designing).")
@click.option("--out", default="lab-results", show_default=True, type=click.Path(file_okay=False),
              help="Folder for results.json, RESULTS.md and the figures (other experiments' "
                   "results already there are kept).")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Experiments run at once in separate processes (one core each; 2 on a "
                   "2-core machine).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256),
              help="torch threads (the lab's tiny models run fastest on one).")
def run_command(name: str, quick: bool, seeds: int | None, seed_start: int, out: str,
                jobs: int, threads: int) -> None:
    """Run experiment NAME (or `all`) and write results into --out."""
    seeds = seeds or (3 if quick else 5)
    from graddoctor.cli.paths import writable_dir

    writable_dir(out, "--out")  # before the experiments run, not after them
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from graddoctor import lab as lab_
    from graddoctor.lab.runner import fmt, run_experiments, timing_line

    names = lab_.names() if name == "all" else [name]
    for n in names:
        lab_.get(n)  # unknown names fail before anything runs
    console = Console()
    with Progress(TextColumn("{task.description:<20}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total} seeds"), TimeElapsedColumn(), console=console) as progress:
        tasks = {n: progress.add_task(n, total=seeds) for n in names}

        def on_progress(n: str, done: int, total: int) -> None:
            progress.update(tasks[n], completed=done)

        t0 = time.perf_counter()
        outcomes = run_experiments(names, "quick" if quick else "full", seeds, out, on_progress,
                                   threads=threads, seed_start=seed_start, jobs=jobs)
        elapsed = time.perf_counter() - t0
    for o in outcomes:
        verdict = "[green]pass[/]" if o.passed else "[red]FAIL[/]"
        console.print(f"{o.name}: {verdict} ({o.seconds:.1f} s wall, {o.cpu_seconds:.1f} s CPU)")
        for c in o.checks:
            mark = "ok " if c["passed"] else "BAD"
            console.print(f"  {mark} {c['claim']}: {c['seeds_passed']}/{len(c['per_seed'])} seeds; "
                          f"mean {fmt(c['mean'])} [{fmt(c['min'])}, {fmt(c['max'])}] "
                          f"(check each seed {c['op']} {fmt(c['threshold'])}; paper {c['paper']})",
                          highlight=False, markup=False)
    console.print(f"{sum(o.passed for o in outcomes)}/{len(outcomes)} pass on every seed; "
                  f"{timing_line(outcomes, {'elapsed_s': elapsed, 'jobs': jobs})}; "
                  f"results in {out}/", highlight=False)
    if not all(o.passed for o in outcomes):
        raise SystemExit(1)


@lab.command("render")
@click.option("--out", default="lab-results", show_default=True,
              type=click.Path(file_okay=False, exists=True),
              help="Folder holding results.json; RESULTS.md is rewritten there.")
def render_command(out: str) -> None:
    """Rewrite RESULTS.md from results.json (stored numbers, current texts); runs nothing."""
    from graddoctor.lab.runner import rerender

    outcomes = rerender(out)
    click.echo(f"{sum(o.passed for o in outcomes)}/{len(outcomes)} pass; {out}/RESULTS.md rewritten")
