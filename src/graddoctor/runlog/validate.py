"""Checking the records of a run log as they are read: the format version, and every field's type.

A run log is a user-given file: a line that is not a JSON object, or a step without an integer
``step``, is skipped; a field of the wrong type is dropped (a map keeps its good entries). Both
are counted (``Counts``) and ``read_run`` puts the counts in the meta record as ``"malformed"``.
A meta line of a newer or unknown format version is an ``InputError``: read silently, it would
look like a run with no layers and no findings.

Example:
    >>> n = Counts()
    >>> clean_step({"type": "step", "step": 3, "loss": "x", "grad_norm": {"a": 1.0, "b": [2]}}, n)
    {'type': 'step', 'step': 3, 'grad_norm': {'a': 1.0}}
    >>> n.fields
    2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from graddoctor.errors import InputError
from graddoctor.runlog.format import FLOAT_MAPS, VERSION

#: the format versions this graddoctor reads (``docs/runlog.md``)
READABLE_VERSIONS = (1, 2, 3)
_NUMBER_OR_NULL = ("loss", "lr")
_MAPS = FLOAT_MAPS


@dataclass
class Counts:
    """Malformed lines skipped and fields dropped while reading one file."""

    lines: int = 0
    fields: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"lines": self.lines, "fields": self.fields}


def is_number(v: Any) -> bool:
    """An int or float (not a bool), as recorded numbers are after ``decode_floats``.

    Example:
        >>> [is_number(v) for v in (1, 2.5, True, "1", None)]
        [True, True, False, False, False]
    """
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_version(meta: dict, where: str) -> None:
    """Raise unless this graddoctor reads the meta record's format version (missing: version 1).

    Args:
        meta: a meta record.
        where: the file, for the message.

    Raises:
        InputError: (one line) a newer or an unknown version.

    Example:
        >>> check_version({"version": 2}, "f")
        >>> check_version({"version": 99}, "watch.jsonl")
        Traceback (most recent call last):
        graddoctor.errors.InputError: watch.jsonl: run-log format version 99 is newer than this graddoctor reads (...
    """
    v = meta.get("version", 1)
    if v in READABLE_VERSIONS and not isinstance(v, bool):
        return
    if is_number(v) and v > VERSION:
        raise InputError(f"{where}: run-log format version {v} is newer than this graddoctor reads "
                         f"(up to {VERSION}) - upgrade graddoctor (pip install -U graddoctor)")
    raise InputError(f"{where}: unknown run-log format version {v!r} (this graddoctor reads "
                     f"{list(READABLE_VERSIONS)}) - is it a file written by gd.watch?")


def _entries(v: Any, n: Counts) -> list[dict]:
    if not isinstance(v, list):
        n.fields += v is not None
        return []
    good = [e for e in v if isinstance(e, dict) and isinstance(e.get("name"), str)]
    n.fields += len(v) - len(good)
    return good


def clean_meta(rec: dict, n: Counts) -> dict:
    """The meta record with its ``layers``/``activations`` lists and ``config`` of the right types.

    Example:
        >>> clean_meta({"type": "meta", "layers": [{"name": "0"}, 5], "config": []}, Counts())
        {'type': 'meta', 'layers': [{'name': '0'}], 'config': {}, 'activations': []}
    """
    out = dict(rec)
    out["layers"], out["activations"] = _entries(rec.get("layers"), n), _entries(rec.get("activations"), n)
    if not isinstance(rec.get("config", {}), dict):
        n.fields += 1
        out["config"] = {}
    if "run_id" in out and not isinstance(out["run_id"], str):
        n.fields += 1
        out["run_id"] = str(out["run_id"])
    return out


def _is_count(x: Any) -> bool:
    return is_number(x) and math.isfinite(x) and x >= 0 and float(x).is_integer()


def _number_map(v: Any, n: Counts, counts: bool = False) -> dict | None:
    if not isinstance(v, dict):
        n.fields += 1
        return None
    good = {k: x for k, x in v.items() if (_is_count(x) if counts else x is None or is_number(x))}
    n.fields += len(v) - len(good)
    return good


def _site_stats(v: Any, n: Counts) -> dict | None:
    """One activation site's statistics: numbers, plus an optional ``hist`` (lo, hi, counts)."""
    hist = v.get("hist") if isinstance(v, dict) else None
    out = _number_map({k: x for k, x in v.items() if k != "hist"} if isinstance(v, dict) else v, n)
    if out is not None and hist is not None:
        ok = (isinstance(hist, dict) and is_number(hist.get("lo")) and is_number(hist.get("hi"))
              and isinstance(hist.get("counts"), list) and all(_is_count(c) for c in hist["counts"]))
        if ok:
            out["hist"] = hist
        else:
            n.fields += 1
    return out


def clean_step(rec: dict, n: Counts) -> dict | None:
    """The step record with every field of the wrong type dropped; None (a skipped line)
    without an integer ``step``.

    Example:
        >>> clean_step({"type": "step", "step": "1"}, Counts()) is None
        True
    """
    step = rec.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        n.lines += 1
        return None
    out = dict(rec)
    for key in _NUMBER_OR_NULL:
        if key in out and out[key] is not None and not is_number(out[key]):
            del out[key]
            n.fields += 1
    if "lrs" in out and not (isinstance(out["lrs"], list) and all(x is None or is_number(x) for x in out["lrs"])):
        del out["lrs"]  # every param group's rate, in group order: a wrong entry spoils the order
        n.fields += 1
    if "skipped" in out and not isinstance(out["skipped"], bool):
        del out["skipped"]
        n.fields += 1
    for key in _MAPS:
        if key in out:
            m = _number_map(out[key], n)
            if m is None:
                del out[key]
            else:
                out[key] = m
    if "nonfinite" in out:  # counts: whole numbers >= 0
        m = _number_map(out["nonfinite"], n, counts=True)
        if m is None:
            del out["nonfinite"]
        else:
            out["nonfinite"] = m
    if "act" in out:
        act = out["act"]
        if not isinstance(act, dict):
            del out["act"]
            n.fields += 1
        else:
            out["act"] = {site: m for site, st in act.items() if (m := _site_stats(st, n)) is not None}
    if "run_id" in out and not isinstance(out["run_id"], str):
        del out["run_id"]
        n.fields += 1
    return out


#: event fields that are lists of strings (``docs/runlog.md``)
_EVENT_NAMES = ("codes", "remedies", "modules")


def clean_event(rec: dict, n: Counts) -> dict | None:
    """The event record with wrongly typed fields dropped; None (a skipped line) without an
    integer ``step`` and a string ``kind``.

    Example:
        >>> n = Counts()
        >>> clean_event({"type": "event", "kind": "autofix", "step": 40, "codes": ["x", 3],
        ...              "findings": [{"code": "x"}, "y"], "message": 5}, n)
        {'type': 'event', 'kind': 'autofix', 'step': 40, 'codes': ['x'], 'findings': [{'code': 'x'}]}
        >>> n.fields, clean_event({"type": "event", "step": 1}, n), n.lines
        (3, None, 1)
    """
    step, kind = rec.get("step"), rec.get("kind")
    if not isinstance(step, int) or isinstance(step, bool) or not isinstance(kind, str):
        n.lines += 1
        return None
    out = dict(rec)
    for key in _EVENT_NAMES + ("findings",):
        if key not in out:
            continue
        want = dict if key == "findings" else str
        v = out[key]
        if not isinstance(v, list):
            del out[key]
            n.fields += 1
            continue
        out[key] = [x for x in v if isinstance(x, want)]
        n.fields += len(v) - len(out[key])
    for key in ("message", "run_id"):
        if key in out and not isinstance(out[key], str):
            del out[key]
            n.fields += 1
    return out


__all__ = ["READABLE_VERSIONS", "Counts", "check_version", "clean_event", "clean_meta", "clean_step",
           "is_number"]
