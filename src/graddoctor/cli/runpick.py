"""Which run of a run log a command reads (``--run``), and the note naming the others.

A ``watch.jsonl`` holds several runs when its ``log_dir`` was used more than once (a second
``fit``, a resumed training, two scripts). The commands read one run, the last by default, and
say so when there are others. A folder holding several logs (``graddoctor demo``'s
``--out``, one subfolder per run): ``--run RUN_ID`` reads the log(s) that hold that run
(``logs_with_run``), and ``watch-report`` names the subfolders to pass (``resolve_log``).

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "watch.jsonl"), "w") as f:
    ...     _ = f.write('{"type":"meta","run_id":"a"}\\n{"type":"step","step":1,"run_id":"a"}\\n'
    ...                 '{"type":"meta","run_id":"b"}\\n{"type":"step","step":2,"run_id":"b"}\\n')
    >>> run, note = pick_run(d, "1")
    >>> run, note.splitlines()[0].endswith("holds 2 runs; showing run 1 of 2 - pick one with --run first|last|N|RUN_ID:")
    ('first', True)
"""

from __future__ import annotations

import os
from pathlib import Path

from graddoctor.errors import InputError

RUN_HELP = ("Which run of a watch.jsonl holding several (the log_dir used again: a second fit, "
            "a resume): last, first, its number (1 = first) or its run_id.")


def pick_run(path: str | os.PathLike, run: str = "last") -> tuple[str, str | None]:
    """The ``run`` to pass to ``read_run`` / ``read_events``, and a note naming the file's runs.

    Args:
        path: a ``watch.jsonl`` file or the directory holding it.
        run: "last", "first", a run_id, or a run's number in the file (from 1).

    Returns:
        ``(run, note)``: ``note`` lists the runs and marks the one shown; None when the file
        holds one run.

    Raises:
        InputError: no run log at ``path``, a number out of range, or no such run_id.
    """
    from graddoctor.runlog import list_runs, run_path

    runs = list_runs(path)
    ids = [r["run_id"] for r in runs]
    run = _plain(run)
    if run in ("last", "first"):
        shown = len(runs) if run == "last" else 1
    elif run in ids:
        shown = len(ids) - ids[::-1].index(run)  # read_run takes the last run with that id
    elif run.isdigit() and 1 <= int(run) <= len(runs):
        shown = int(run)
        run = "first" if shown == 1 else "last" if shown == len(runs) else ids[shown - 1]
        if run is None:  # format 1: runs without ids
            raise InputError(f"run {shown} of {run_path(path)} has no run_id - pick first or last")
    else:
        named = ", ".join(str(i) for i in ids if i) or "none"
        raise InputError(f"{run_path(path)} has no run {run!r} - pass --run first, last, "
                         f"{'1' if len(runs) == 1 else f'a number from 1 to {len(runs)}'} or a run_id ({named})")
    if len(runs) < 2:
        return run, None
    lines = [f"graddoctor: note: {run_path(path)} holds {len(runs)} runs; showing run {shown} of "
             f"{len(runs)} - pick one with --run first|last|N|RUN_ID:"]
    for k, r in enumerate(runs, start=1):
        span = f" ({r['first_step']}-{r['last_step']})" if r["steps"] else ""
        mark = "   <- shown" if k == shown else ""
        lines.append(f"  {k}  {r['run_id'] or '-'}  {r['steps']} steps{span}{mark}")
    return run, "\n".join(lines)


def _plain(run: str) -> str:
    """``run`` trimmed, "First"/"LAST" as "first"/"last"."""
    run = str(run).strip()
    return run.lower() if run.lower() in ("first", "last") else run


def holds_run(path: str | os.PathLike, run: str) -> bool:
    """Whether the run log at ``path`` has the run ``run`` ("first", "last", a number or a run_id)."""
    from graddoctor.runlog import list_runs

    runs, run = list_runs(path), _plain(run)
    return (run in ("first", "last") or any(r["run_id"] == run for r in runs)
            or (run.isdigit() and 1 <= int(run) <= len(runs)))


def logs_with_run(logs: list[Path], run: str, where: str | os.PathLike) -> tuple[list[Path], str | None]:
    """Of several run logs, the ones holding ``run``, and a note naming them when some do not.

    Args:
        logs: the run logs found (one: returned as is, ``pick_run`` then says what is wrong).
        run: as ``pick_run``.
        where: the folder they were found in, for the messages.

    Raises:
        InputError: (one line) none of them holds ``run``.
    """
    run = _plain(run)
    if len(logs) < 2 or run in ("first", "last"):
        return logs, None
    held = [f for f in logs if holds_run(f, run)]
    if not held:
        from graddoctor.runlog import list_runs

        listed = "; ".join(f"{f}: {', '.join(str(r['run_id']) for r in list_runs(f))}" for f in logs)
        raise InputError(f"no run log in {str(where)!r} holds run {run!r} (runs: {listed}) - pass --run "
                         "first, last, a number or one of those run_ids")
    if len(held) == len(logs):
        return held, None
    return held, (f"graddoctor: note: --run {run}: reading {', '.join(map(str, held))} "
                  f"({len(held)} of the {len(logs)} run logs in {where} hold it)")


def resolve_log(path: str | os.PathLike, run: str) -> tuple[Path | str | os.PathLike, str | None]:
    """The one run log ``watch-report`` reads: ``path`` itself, or, for a folder without a
    ``watch.jsonl`` whose subfolders hold some, the one holding ``run`` (a note says which).

    Raises:
        InputError: (one line) several subfolder logs and no way to choose (the folders named),
            or none holds ``run``.
    """
    from graddoctor.runlog import FILENAME

    p = Path(path)
    subs = sorted(p.glob(f"*/{FILENAME}")) if p.is_dir() and not (p / FILENAME).exists() else []
    if not subs:
        return path, None  # read_run names what is missing
    held, _ = logs_with_run(subs, run, path)
    if len(held) == 1:
        return held[0], (None if len(subs) == 1 else f"graddoctor: note: reading {held[0]} (run {_plain(run)})")
    names = ", ".join(str(f.parent) for f in held)
    why = f"run {_plain(run)!r} is in {len(held)} of them" if _plain(run) not in ("first", "last") else "pick one"
    raise InputError(f"{str(path)!r} holds no {FILENAME} but its subfolders hold {len(subs)} run logs ({why}): "
                     f"{names} - pass one of those folders, or --run RUN_ID "
                     f"(graddoctor report {path} reads them all)")


__all__ = ["RUN_HELP", "holds_run", "logs_with_run", "pick_run", "resolve_log"]
