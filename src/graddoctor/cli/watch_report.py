"""``graddoctor watch-report RUN_DIR``: the Report of a watched run, from its JSONL log.

Exit codes: 0 no error finding, 1 an error finding or no step recorded (nothing was judged),
2 bad input (missing or unreadable run log, no such ``--run``). A log holding several runs: the
last one is shown, ``--run`` picks another, and a note on stderr lists them. A folder without a
``watch.jsonl`` whose subfolders hold run logs (``graddoctor demo --out``): the one subfolder log,
or the one holding ``--run RUN_ID``; else the subfolders are named (exit 2).
"""

from __future__ import annotations

import math
import sys

import click
from rich.console import Console

from graddoctor.cli.runpick import RUN_HELP, pick_run, resolve_log


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2e}" if math.isfinite(v) else str(v)


def layer_table(meta: dict, steps: list[dict], last: int = 10) -> str:
    """Per layer: the median gradient norm over the last ``last`` used steps, and the update ratio
    of the last step whose updates were sampled (both named in the header)."""
    used = [s for s in steps if s.get("grad_norm") and not s.get("skipped")][-last:]
    at = next((s for s in reversed(steps) if s.get("update_ratio")), {})
    upd = at.get("update_ratio") or {}
    head_grad = f"|grad| median, last {len(used)} step{'' if len(used) == 1 else 's'}"
    head_upd = f"update/weight @{at['step']}" if "step" in at else "update/weight"
    rows = [f"{'layer':<36} {'kind':<10} {head_grad:>28} {head_upd:>22}"]
    for lay in meta.get("layers", []):
        vals = sorted(v for s in used if (v := s["grad_norm"].get(lay["name"])) is not None)
        med = vals[len(vals) // 2] if vals else None
        name = (lay["name"] or "<model>") + ("" if lay.get("trainable", True) else " (not in the optimizer)"
                                             if lay.get("outside_optimizer") else " (frozen)")
        rows.append(f"{name:<36} {lay.get('kind', ''):<10} {_fmt(med):>28} {_fmt(upd.get(lay['name'])):>22}")
    return "\n".join(rows)


def lr_text(steps: list[dict]) -> str:
    """", last lr R" (", last lr per param group R1 / R2" where every group's rate was recorded), or ""."""
    from graddoctor.runlog import step_lrs

    lrs = next((found for s in reversed(steps) if (found := step_lrs(s))), [])
    if not lrs:
        return ""
    return f", last lr {_fmt(lrs[0])}" if len(lrs) == 1 else \
        f", last lr per param group {' / '.join(map(_fmt, lrs))}"


@click.command("watch-report")
@click.argument("run_dir", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the Report as JSON.")
@click.option("--layers/--no-layers", default=True, show_default=True, help="Print the per-layer table.")
@click.option("--run", "run", default="last", show_default=True, help=RUN_HELP)
def watch_report(run_dir: str, as_json: bool, layers: bool, run: str) -> None:
    """Print the Report of a run recorded by gd.watch(log_dir=RUN_DIR)."""
    from graddoctor.diagnose.watching import build_report
    from graddoctor.runlog import read_events, read_run

    log, found = resolve_log(run_dir, run)  # a folder of run logs: the one holding --run
    run, note = pick_run(log, run)  # InputError -> exit 2 (one line)
    for line in (found, note):
        if line:
            click.echo(line, err=True)
    meta, steps = read_run(log, run=run)
    bad = meta.get("malformed")
    if bad:
        click.echo(f"graddoctor: warning: {run_dir}: skipped {bad['lines']} malformed line(s) and "
                   f"{bad['fields']} wrongly typed field(s)", err=True)
    report = build_report(meta, steps, read_events(log, run=run))  # autofix rounds: printed after the findings
    if as_json:
        click.echo(report.to_json())
    else:
        click.echo(f"{len(steps)} steps, {len(meta.get('layers', []))} layers{lr_text(steps)} ({log})")
        if layers:
            click.echo(layer_table(meta, steps))
        Console().print(report)
    sys.exit(0 if report.ok and steps else 1)
