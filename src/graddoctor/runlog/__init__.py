"""The watch run log: JSON lines, one meta record then one record per step.

Format: see ``/work/notes/RUNLOG.md`` (meta: ``{"type": "meta", "version": 1,
"run_id", "layers", "activations", "config"}``; steps: ``{"type": "step",
"step", "loss", "skipped", "lr", "grad_norm", ...}``). Non-finite floats are
written as the strings ``"nan"``, ``"inf"``, ``"-inf"`` (``report._jsonable``)
and decoded back to floats by ``read_run``.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "watch.jsonl"), "w") as f:
    ...     _ = f.write(encode({"type": "meta", "version": 1, "run_id": "a", "layers": []}) + "\\n")
    ...     _ = f.write(encode({"type": "step", "step": 1, "loss": float("nan")}) + "\\n")
    >>> meta, steps = read_run(d)
    >>> steps[0]["loss"]
    nan
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from graddoctor.errors import InputError
from graddoctor.report import _jsonable

VERSION = 2  # 2: weight_norm written on measured steps only (read_run carries it forward)
FILENAME = "watch.jsonl"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: keys of a step record whose values are per-layer / per-site float maps
FLOAT_MAPS = ("grad_norm", "weight_norm", "update_norm", "update_ratio", "out_grad_norm")


def encode(record: dict[str, Any]) -> str:
    """One JSON line (no newline); non-finite floats become "nan"/"inf"/"-inf".

    Plain records go straight to the C encoder; only a record that holds a
    non-finite float or a non-JSON type takes the slower ``report._jsonable`` path.
    """
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(_jsonable(record), separators=(",", ":"), allow_nan=False)


def as_float(v: Any) -> float:
    """A run-log number as float: None, missing or not a number -> nan; the strings
    "nan"/"inf"/"-inf" decoded (the one decoder used by plots and rules).

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
    """True for a recorded NaN/Inf: a non-finite number or the strings "nan"/"inf"/"-inf"
    (any case); None (nothing recorded) is not one.

    Example:
        >>> [is_nonfinite(v) for v in ("nan", float("-inf"), 1.0, None, "relu")]
        [True, True, False, False, False]
    """
    if isinstance(v, str):
        return v.lower() in _NONFINITE
    return isinstance(v, (int, float)) and not math.isfinite(v)


def decode_floats(obj: Any) -> Any:
    """Turn "nan"/"inf"/"-inf" strings back into floats, recursively."""
    if isinstance(obj, dict):
        return {k: decode_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_floats(v) for v in obj]
    if isinstance(obj, str) and obj in _NONFINITE:
        return _NONFINITE[obj]
    return obj


def run_path(path_or_dir: str | os.PathLike) -> Path:
    """The JSONL file of a run: ``path`` itself if a file, else ``<dir>/watch.jsonl``."""
    p = Path(path_or_dir)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        raise InputError(f"no watch run log at {str(p)!r} - pass the log_dir given to gd.watch() "
                         f"or the path of its {FILENAME}")
    return p


def carry_weights(steps: list[dict]) -> list[dict]:
    """Fill ``weight_norm`` into the steps between two measurements (in place; returns ``steps``).

    ``watch`` measures weight norms every ``weight_every`` steps and writes them on those steps
    only; the steps in between get the last measured dict (shared, read-only) and every step
    with one gets ``weight_step``, the step it was measured at.

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


def read_run(path_or_dir: str | os.PathLike, run: str = "last") -> tuple[dict, list[dict]]:
    """Read a run log back: ``(meta, steps)``.

    A truncated or corrupt last line (a killed process) is skipped; a corrupt
    line elsewhere raises ``InputError``. A file holding several runs (the same
    ``log_dir`` used twice; each run has its own ``run_id``) returns the last one
    (``run="first"`` for the first, or pass a ``run_id``). Re-attaching the same watcher repeats its meta
    line with the same ``run_id``; the latest meta is returned.

    Args:
        path_or_dir: a ``watch.jsonl`` file or the directory holding it.
        run: "last", "first" or a run_id.
    """
    p = run_path(path_or_dir)
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    runs: list[tuple[dict, list[dict]]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break  # a killed writer leaves at most one partial line, the last
            raise InputError(f"{p}: line {i + 1} is not valid JSON - the run log is corrupt") from None
        rec = decode_floats(rec)
        if rec.get("type") == "meta":
            if runs and runs[-1][0].get("run_id") == rec.get("run_id"):
                runs[-1] = (rec, runs[-1][1])
            else:
                runs.append((rec, []))
        elif rec.get("type") == "step":
            if not runs:
                runs.append(({}, []))
            runs[-1][1].append(rec)
    if not runs:
        raise InputError(f"{p} holds no watch records - was the run started with gd.watch(log_dir=...)?")
    if run == "last":
        return runs[-1][0], carry_weights(runs[-1][1])
    if run == "first":
        return runs[0][0], carry_weights(runs[0][1])
    for r in runs:
        if r[0].get("run_id") == run:
            return r[0], carry_weights(r[1])
    raise InputError(f"{p} has no run {run!r}; runs: {[r[0].get('run_id') for r in runs]}")


__all__ = [
    "FILENAME", "FLOAT_MAPS", "VERSION", "as_float", "carry_weights", "decode_floats", "encode",
    "is_nonfinite", "read_run", "run_path",
]
