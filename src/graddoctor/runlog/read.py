"""Reading a run log back: the runs of a file, weight norms carried between measurements,
and the one decoder of recorded numbers.

Example:
    >>> import tempfile, os
    >>> from graddoctor.runlog.format import encode
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, FILENAME), "w") as f:
    ...     _ = f.write(encode({"type": "meta", "version": 2, "run_id": "a", "layers": []}) + "\\n")
    ...     _ = f.write(encode({"type": "step", "step": 1, "loss": float("nan")}) + "\\n")
    >>> meta, steps = read_run(d)
    >>> meta["run_id"], steps[0]["loss"]
    ('a', nan)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from graddoctor.errors import InputError
from graddoctor.runlog.format import FILENAME, NONFINITE, decode_floats
from graddoctor.runlog.validate import Counts, check_version, clean_event, clean_meta, clean_step


def as_float(v: Any) -> float:
    """A run-log number as float; the strings "nan"/"inf"/"-inf" decoded.

    The one decoder used by plots and rules.

    Args:
        v: a recorded value.

    Returns:
        The float; nan for None, a missing value or anything that is not a number.

    Example:
        >>> [as_float(v) for v in (2, "inf", None, {})]
        [2.0, inf, nan, nan]
    """
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def is_nonfinite(v: Any) -> bool:
    """True for a recorded NaN/Inf: a non-finite number or the strings "nan"/"inf"/"-inf" (any case).

    Args:
        v: a recorded value.

    Returns:
        Whether it is a NaN or an infinity; None (nothing recorded) is not one.

    Example:
        >>> [is_nonfinite(v) for v in ("nan", float("-inf"), 1.0, None, "relu")]
        [True, True, False, False, False]
    """
    if isinstance(v, str):
        return v.lower() in NONFINITE
    return isinstance(v, (int, float)) and not math.isfinite(v)


def step_lrs(rec: dict) -> list[float | None]:
    """The learning rate of every param group at one step record, in group order.

    ``lrs`` holds them all where the run recorded it; an older record has ``lr`` (the first
    group's) only, and that is all that is known.

    Example:
        >>> step_lrs({"lr": 0.1, "lrs": [0.1, 0.01]}), step_lrs({"lr": 0.1}), step_lrs({"lr": None})
        ([0.1, 0.01], [0.1], [])
    """
    lrs = rec.get("lrs")
    if isinstance(lrs, list) and lrs:
        return list(lrs)
    return [] if rec.get("lr") is None else [rec["lr"]]


def run_path(path_or_dir: str | os.PathLike) -> Path:
    """The JSONL file of a run: ``path_or_dir`` itself if a file, else ``<dir>/watch.jsonl``.

    Args:
        path_or_dir: a run-log file or the ``log_dir`` holding one.

    Returns:
        The file's path.

    Raises:
        InputError: there is no such file.

    Example:
        >>> import tempfile
        >>> run_path(tempfile.mkdtemp())
        Traceback (most recent call last):
        graddoctor.errors.InputError: no watch run log at ...
    """
    p = Path(path_or_dir)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        tb = p.parent.is_dir() and any(p.parent.glob("events.out.tfevents.*"))
        hint = (f" (this folder holds TensorBoard events only: watch with sinks=['jsonl', 'tensorboard'] to "
                f"also write the {FILENAME} graddoctor reads)" if tb else "")
        raise InputError(f"no watch run log at {str(p)!r} - pass the log_dir given to gd.watch() "
                         f"or the path of its {FILENAME}{hint}")
    return p


def carry_weights(steps: list[dict]) -> list[dict]:
    """Fill ``weight_norm`` into the steps between two measurements (in place).

    ``watch`` measures weight norms every ``weight_every`` steps and writes them on those steps
    only; the steps in between get the last measured dict (shared, read-only) and every step
    with one gets ``weight_step``, the step it was measured at.

    Args:
        steps: step records in step order.

    Returns:
        ``steps`` itself.

    Example:
        >>> s = carry_weights([{"step": 1, "weight_norm": {"0": 2.0}}, {"step": 2}])
        >>> s[1]["weight_norm"], s[1]["weight_step"]
        ({'0': 2.0}, 1)
    """
    last: tuple[dict, int] | None = None
    for s in steps:
        if "weight_norm" in s:
            s.setdefault("weight_step", s.get("step"))
            last = (s["weight_norm"], s["weight_step"])
        elif last is not None:
            s["weight_norm"], s["weight_step"] = last
    return steps


def mark_unfrozen(meta: dict, steps: list[dict]) -> dict:
    """``meta`` with the layers frozen at attach that recorded a gradient later (a part unfrozen
    mid-run) marked ``trainable`` again, with ``unfrozen_at`` (the first step with its gradient):
    the rules then read them; ``meta`` itself when there is none (the meta line is written once).

    Example:
        >>> meta = {"layers": [{"name": "0", "trainable": False}, {"name": "1", "trainable": False}]}
        >>> steps = [{"step": 1, "grad_norm": {"0": None}}, {"step": 2, "grad_norm": {"0": 0.5}}]
        >>> mark_unfrozen(meta, steps)["layers"]
        [{'name': '0', 'trainable': True, 'unfrozen_at': 2}, {'name': '1', 'trainable': False}]
    """
    frozen = {ly.get("name") for ly in meta.get("layers") or []  # outside the optimizer: no freeze to undo
              if ly.get("trainable", True) is False and not ly.get("outside_optimizer")}
    first: dict[str, Any] = {}
    for s in steps if frozen else ():
        for name, v in (s.get("grad_norm") or {}).items():
            if name in frozen and name not in first and v is not None and math.isfinite(as_float(v)):
                first[name] = s.get("step")
    if not first:
        return meta
    layers = [dict(ly, trainable=True, unfrozen_at=first[ly["name"]]) if ly.get("name") in first else ly
              for ly in meta["layers"]]
    return dict(meta, layers=layers)


#: one run of a file: its latest meta record, its step records and its event records
_Run = tuple[dict, list[dict], list[dict]]


def _find(runs: list[_Run], run_id: Any) -> _Run | None:
    return next((r for r in reversed(runs) if run_id is not None and r[0].get("run_id") == run_id), None)


def _run_of(runs: list[_Run], rec: dict, n: Counts) -> _Run | None:
    """The run a step or event line belongs to: the one its ``run_id`` names (format version 3:
    several watchers may share a file), else the last one; None (counted) for an unknown run."""
    if "run_id" not in rec:
        if not runs:
            runs.append(({}, [], []))
        return runs[-1]
    run = _find(runs, rec["run_id"])
    n.lines += run is None
    return run


def _after_partial(line: str) -> Any:
    """The record glued after a partial one (``{"type":"st{"type":"meta",...}``: a run appended
    to the log of a killed run, written before ``JsonlSink`` started such a run on a new line), or None.

    Example:
        >>> _after_partial('{"type":"st{"type":"meta","run_id":"b"}')
        {'type': 'meta', 'run_id': 'b'}
    """
    start = line.find('{"type":', 1)
    while start > 0:
        try:
            return json.loads(line[start:])
        except (ValueError, RecursionError):
            start = line.find('{"type":', start + 1)
    return None


def _runs(p: Path) -> tuple[list[_Run], Counts]:
    """Every run of the file: its latest meta, its steps and its events, in file order; malformed
    lines skipped and fields dropped (counted), a killed writer's partial last line skipped (also
    when a later run appended to the log after it)."""
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    runs: list[_Run] = []
    n = Counts()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            rec = _after_partial(line)  # a killed writer's partial line, the next run's record glued on
            if rec is None:  # a killed writer leaves one partial line: the last, or the last before a new run
                n.lines += i != len(lines) - 1 and not lines[i + 1].startswith('{"type":"meta"')
                continue
        if not isinstance(rec, dict):
            n.lines += 1
            continue
        rec = decode_floats(rec)
        kind = rec.get("type")
        if kind == "meta":
            check_version(rec, str(p))
            rec = clean_meta(rec, n)
            same = _find(runs, rec.get("run_id"))
            if same is not None:  # a re-attach repeats the meta line: the latest one counts
                runs[runs.index(same)] = (rec, same[1], same[2])
            else:
                runs.append((rec, [], []))
        elif kind in ("step", "event"):
            clean = (clean_step if kind == "step" else clean_event)(rec, n)
            run = None if clean is None else _run_of(runs, clean, n)
            if run is not None:
                run[1 if kind == "step" else 2].append(clean)
        else:
            n.lines += 1
    return runs, n


def _pick(path_or_dir: str | os.PathLike, run: str) -> tuple[_Run, Counts]:
    p = run_path(path_or_dir)
    runs, n = _runs(p)
    if not runs:
        raise InputError(_no_records(p))
    found = runs[-1] if run == "last" else runs[0] if run == "first" else _find(runs, run)
    if found is None:
        raise InputError(f"{p} has no run {run!r}; runs: {[r[0].get('run_id') for r in runs]}")
    return found, n


def _parses(line: str) -> bool:
    """Whether ``line`` is whole JSON (a killed writer leaves its line cut short)."""
    try:
        json.loads(line)
    except (ValueError, RecursionError):
        return False
    return True


def _no_records(p: Path) -> str:
    """Why a file gave no run: empty, a first (meta) line cut short or corrupt, not UTF-8, or
    not a run log."""
    data = p.read_bytes()
    fix = f"pass the log_dir given to gd.watch() or the path of its {FILENAME}"
    try:
        lines = [x for x in data.decode("utf-8").splitlines() if x.strip()]
    except UnicodeDecodeError:
        return f"{p} is not a watch run log (not UTF-8 text) - {fix}"
    if lines and lines[0].startswith('{"type":') and not _parses(lines[0]):
        return (f"{p}: its first line (the run's meta record) is truncated or corrupt - the run was "
                "probably killed while writing it, so no run can be read; run the training again "
                "with gd.watch(log_dir=...) to write a new log")
    if len(lines) > 1 or (lines and not lines[0].startswith('{"type":')):
        return f"{p} is not a watch run log (none of its {len(lines)} line(s) is a graddoctor record) - {fix}"
    return f"{p} holds no watch records - was the run started with gd.watch(log_dir=...)?"


def read_run(path_or_dir: str | os.PathLike, run: str = "last") -> tuple[dict, list[dict]]:
    """Read a run log back: ``(meta, steps)``, weight norms carried (``carry_weights``), layers
    unfrozen mid-run marked trainable (``mark_unfrozen``).

    A truncated or corrupt last line (a killed process) is skipped. A file holding several
    runs (the same ``log_dir`` used twice, or by two watchers at once; each run has its own
    ``run_id``, on every line since format version 3) gives the one ``run`` names.
    Re-attaching the same watcher repeats its meta line with the same ``run_id``; the latest
    meta is returned. Malformed lines are skipped and wrongly typed fields dropped
    (``runlog.validate``), counted in ``meta["malformed"]`` (``{"lines", "fields"}``, present
    when either is not 0). Event lines (autofix rounds) are read by ``read_events``.

    Args:
        path_or_dir: a ``watch.jsonl`` file or the directory holding it.
        run: "last", "first" or a run_id.

    Returns:
        The run's meta record and its step records, non-finite floats decoded.

    Raises:
        InputError: no run log there, no records, a newer or unknown format version, or no run ``run``.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, FILENAME), "w") as f:
        ...     _ = f.write('{"type":"meta","run_id":"a"}\\n{"type":"meta","run_id":"b"}\\n{"type":"st')
        >>> read_run(d, run="first")[0]["run_id"], read_run(d)[0]["run_id"]
        ('a', 'b')
    """
    (meta, steps, _), n = _pick(path_or_dir, run)
    meta = dict(meta, **({"malformed": n.as_dict()} if n.lines or n.fields else {}))
    steps = carry_weights(sorted(steps, key=lambda s: s["step"]))
    return mark_unfrozen(meta, steps), steps


def list_runs(path_or_dir: str | os.PathLike) -> list[dict]:
    """The runs of a run log, in file order (``read_run``'s ``run`` picks one of them).

    Args:
        path_or_dir: a ``watch.jsonl`` file or the directory holding it.

    Returns:
        One ``{"run_id", "steps", "first_step", "last_step"}`` per run (``steps``: its step
        records; first and last step None without any).

    Raises:
        InputError: no run log there, or a newer or unknown format version.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, FILENAME), "w") as f:
        ...     _ = f.write('{"type":"meta","run_id":"a"}\\n{"type":"meta","run_id":"b"}\\n'
        ...                 '{"type":"step","step":5,"run_id":"b"}\\n')
        >>> [(r["run_id"], r["steps"], r["last_step"]) for r in list_runs(d)]
        [('a', 0, None), ('b', 1, 5)]
    """
    runs, _ = _runs(run_path(path_or_dir))
    out = []
    for meta, steps, _ in runs:
        numbers = [s["step"] for s in steps]
        out.append({"run_id": meta.get("run_id"), "steps": len(steps),
                    "first_step": min(numbers, default=None), "last_step": max(numbers, default=None)})
    return out


def read_events(path_or_dir: str | os.PathLike, run: str = "last") -> list[dict]:
    """The event records of one run of a run log (autofix rounds, ``Watcher.log_event``), in step order.

    Logs written before events existed have none: ``[]``.

    Args:
        path_or_dir: a ``watch.jsonl`` file or the directory holding it.
        run: "last", "first" or a run_id, as for ``read_run``.

    Returns:
        The events (``{"type": "event", "kind", "step", ...}``, see ``docs/runlog.md``).

    Raises:
        InputError: as ``read_run``.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> with open(os.path.join(d, FILENAME), "w") as f:
        ...     _ = f.write('{"type":"meta","run_id":"a"}\\n'
        ...                 '{"type":"event","kind":"autofix","step":40,"run_id":"a","codes":["vanishing-gradient"]}\\n')
        >>> [(e["step"], e["codes"]) for e in read_events(d)]
        [(40, ['vanishing-gradient'])]
    """
    (_, _, events), _ = _pick(path_or_dir, run)
    return sorted(events, key=lambda e: e["step"])


__all__ = ["as_float", "carry_weights", "is_nonfinite", "list_runs", "mark_unfrozen", "read_events", "read_run", "run_path",
           "step_lrs"]
