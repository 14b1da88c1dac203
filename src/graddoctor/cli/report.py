"""``graddoctor report RUN_DIR``: one self-contained HTML file from a watch run and/or result JSON.

Reads, from RUN_DIR (or a single file given instead):

- ``watch.jsonl`` run logs (in RUN_DIR and its direct subfolders), diagnosed by ``graddoctor.diagnose.training``,
  with their events (autofix rounds: a timeline table and markers on the figures); of a log holding
  several runs, the last (``--run`` picks another; a note on stderr lists them);
- ``*.json`` files holding a ``Report`` (``report.to_json()``: check or watch) or a repair result
  (``RepairResult.to_dict()``: its changes).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from graddoctor.cli.runpick import RUN_HELP, logs_with_run, pick_run
from graddoctor.errors import InputError
from graddoctor.report import Report

_ORDER = {"check": 0, "watch": 1, "repair": 2}


def load_sections(path: Path, run: str = "last", notes: list[str] | None = None) -> dict[str, Report]:
    """Section title -> Report for every run log and result JSON at ``path`` (check, watch, repair order).

    Args:
        path: a directory (its files and direct subfolders' run logs) or one file.
        run: the run read from each run log holding several (``runpick.pick_run``); with
            several logs, a run_id or number reads only the logs holding it.
        notes: where to add, per run log holding several runs, the note naming them.

    Example:
        >>> load_sections(Path("runs/exp1"))  # doctest: +SKIP
        {'check': Report(...), 'watch': Report(...)}
    """
    from graddoctor.runlog import FILENAME

    if path.is_file():
        files = [path]
    elif path.is_dir():
        logs, note = logs_with_run(sorted(path.glob(FILENAME)) + sorted(path.glob(f"*/{FILENAME}")), run, path)
        if note and notes is not None:
            notes.append(note)
        files = sorted(path.glob("*.json")) + logs
    else:
        raise InputError(f"{str(path)!r} does not exist - pass a watch log_dir or a result .json file")
    groups: list[list[tuple[str, Report]]] = []  # one per file, kept in the file's own order
    for f in files:
        label = ("" if f.parent == path else f.parent.name) if f.name == FILENAME else f.stem
        group = []
        for tag, report in _load(f, run, notes):
            source = " ".join(filter(None, (report.source or "report", tag)))
            group.append((f"{source}: {label}" if label and label != report.source else source, report))
        if group:
            groups.append(group)
    if not groups:
        raise InputError(f"nothing to report in {str(path)!r}: no {FILENAME} and no check/watch/repair JSON "
                         "(write them with gd.watch(log_dir=...) and report.to_json())")
    groups.sort(key=lambda g: _ORDER.get(g[0][1].source, 3))
    found = [item for g in groups for item in g]
    out: dict[str, Report] = {}
    for name, report in found:
        key, n = name, 2
        while key in out:
            key, n = f"{name} ({n})", n + 1
        out[key] = report
    return out


def _load(f: Path, run: str = "last", notes: list[str] | None = None) -> list[tuple[str, Report]]:
    """(tag, Report) pairs in one file: a watch run log, a report, a repair result, or
    ``graddoctor fix``'s changes.json (check before, the repair, check after); none for other JSON."""
    if f.suffix == ".jsonl":
        from graddoctor.diagnose.watching import build_report
        from graddoctor.runlog import read_events, read_run

        run, note = pick_run(f, run)
        meta, steps = read_run(f, run=run)
        bad = meta.get("malformed")
        if bad:  # as watch-report says it
            note = "\n".join(filter(None, (note, f"graddoctor: warning: {f}: skipped {bad['lines']} malformed "
                                                  f"line(s) and {bad['fields']} wrongly typed field(s)")))
        if note and notes is not None:
            notes.append(note)
        return [("", build_report(meta, steps, read_events(f, run=run)))]
    try:
        d = json.loads(f.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{f}: not valid JSON ({e}) - expected report.to_json() output") from None
    if not isinstance(d, dict):
        return []
    if "findings" in d:
        return [("", _report(f, d))]
    out = []
    if isinstance(d.get("before"), dict):
        out.append(("(before)", _report(f, d["before"])))
    if "changes" in d:
        out.append(("", Report([], "repair", {k: v for k, v in d.items() if k not in ("before", "after")})))
    if isinstance(d.get("after"), dict):
        out.append(("(after)", _report(f, d["after"])))
    return out


def _report(f: Path, d: dict) -> Report:
    try:
        return Report.from_dict(d)
    except (TypeError, ValueError) as e:
        raise InputError(f"{f}: not a graddoctor report ({e})") from None


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write (default: RUN_DIR/report.html).")
@click.option("--title", default=None, help="Page title.")
@click.option("--run", "run", default="last", show_default=True, help=RUN_HELP)
def report(run_dir: Path, out: Path | None, title: str | None, run: str) -> None:
    """Write one self-contained HTML report (findings, figures, data) from RUN_DIR.

    RUN_DIR: a watch log_dir (watch.jsonl), a folder of check/repair result JSON files, or one file.
    """
    from graddoctor.cli.paths import writable_file
    from graddoctor.present import html as html

    if out is None:
        out = (run_dir if run_dir.is_dir() else run_dir.parent) / "report.html"
    writable_file(out, "--out")  # before reading and plotting
    notes: list[str] = []
    sections = load_sections(run_dir, run, notes)
    for note in notes:
        click.echo(note, err=True)
    path = html.write(out, sections, title=title or f"graddoctor report: {run_dir.resolve().name}")
    for name, r in sections.items():
        click.echo(f"{name}: {r.summary()}")
    click.echo(f"report written to {path}")
