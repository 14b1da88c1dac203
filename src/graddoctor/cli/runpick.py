"""Which run of a run log a command reads (``--run``), and the note naming the others.

A ``watch.jsonl`` holds several runs when its ``log_dir`` was used more than once (a second
``fit``, a resumed training, two scripts). The commands read one run, the last by default, and
say so when there are others.

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
        raise InputError(f"{run_path(path)} has no run {run!r}; runs: 1-{len(runs)} {ids}")
    if len(runs) < 2:
        return run, None
    lines = [f"graddoctor: note: {run_path(path)} holds {len(runs)} runs; showing run {shown} of "
             f"{len(runs)} - pick one with --run first|last|N|RUN_ID:"]
    for k, r in enumerate(runs, start=1):
        span = f" ({r['first_step']}-{r['last_step']})" if r["steps"] else ""
        mark = "   <- shown" if k == shown else ""
        lines.append(f"  {k}  {r['run_id'] or '-'}  {r['steps']} steps{span}{mark}")
    return run, "\n".join(lines)


__all__ = ["RUN_HELP", "pick_run"]
