"""Watch-run records for the figures: ``(meta, steps)``, layer and site names, per-layer series.

Example:
    >>> ids, values, bad = matrix([{"step": 3, "g": {"a": 1.0}}], "g", ["a"])
    >>> ids.tolist(), values.tolist()
    ([3.0], [[1.0]])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from graddoctor.errors import InputError
from graddoctor.report import Report
from graddoctor.runlog import as_float, is_nonfinite

Run = tuple[dict[str, Any], list[dict[str, Any]]]


def as_run(source: Report | Run | dict[str, Any]) -> Run:
    """``(meta, steps)`` from a watch Report, a ``(meta, steps)`` pair or a ``{"meta", "steps"}`` dict.

    Example:
        >>> as_run(({"layers": []}, [{"type": "step", "step": 0}]))[1][0]["step"]
        0
    """
    if isinstance(source, Report):
        data = source.data
    elif isinstance(source, dict):
        data = source
    elif isinstance(source, (tuple, list)) and len(source) == 2:
        data = {"meta": source[0], "steps": source[1]}
    else:
        raise InputError(
            f"expected a watch Report or (meta, steps), got {type(source).__name__}; "
            "pass w.report() or w.records()"
        )
    meta, steps = data.get("meta"), data.get("steps")
    if not isinstance(meta, dict) or not isinstance(steps, list):
        raise InputError(
            "this report holds no watch run (data['meta'] and data['steps']); "
            "for a check report use plots.probe_profile(report)"
        )
    return meta, [s for s in steps if s.get("type", "step") == "step"]


def layer_names(meta: dict[str, Any], steps: Sequence[dict[str, Any]] = (), key: str = "grad_norm") -> list[str]:
    """Layers in execution order (from meta), then any other names found under ``key`` in steps."""
    return _names([layer["name"] for layer in meta.get("layers", [])], steps, key)


def site_names(meta: dict[str, Any], steps: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Activation sites in execution order (from meta), then any others found in ``act``."""
    return _names([a["name"] for a in meta.get("activations", [])], steps, "act")


def _names(names: list[str], steps: Sequence[dict[str, Any]], key: str) -> list[str]:
    seen = set(names)
    for s in steps:
        for name in s.get(key) or {}:
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def matrix(steps: Sequence[dict[str, Any]], key: str, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer series of ``key`` over the steps that carry it.

    Returns ``(step_ids, values, nonfinite)``: values is ``len(names) x len(step_ids)`` with nan
    where nothing was recorded (null or absent), nonfinite is True where a NaN/Inf was recorded.

    Example:
        >>> ids, v, bad = matrix([{"step": 3, "g": {"a": "nan", "b": None}}], "g", ["a", "b"])
        >>> ids.tolist(), bad.tolist()
        ([3.0], [[True], [False]])
    """
    rows = [s for s in steps if isinstance(s.get(key), dict)]
    ids = np.array([s.get("step", i) for i, s in enumerate(rows)], dtype=float)
    values = np.full((len(names), len(rows)), np.nan)
    bad = np.zeros((len(names), len(rows)), dtype=bool)
    for j, s in enumerate(rows):
        d = s[key]
        for i, name in enumerate(names):
            v = d.get(name)
            if is_nonfinite(v):
                bad[i, j] = True
            else:
                values[i, j] = as_float(v)
    return ids, values, bad


def pick_steps(ids: np.ndarray, steps: int | Iterable[int] | None, n: int = 5) -> list[int]:
    """Column indices for the requested step numbers (default: n evenly spaced, first and last).

    Args:
        ids: the recorded step numbers, one per column.
        steps: a step number, several, or None.
        n: how many columns when ``steps`` is None.

    Returns:
        Column indices into ``ids``.

    Raises:
        InputError: a requested step was not recorded.

    Example:
        >>> pick_steps(np.array([1.0, 10, 20, 30]), None, n=3), pick_steps(np.array([1.0, 10]), 10)
        ([0, 2, 3], [1])
    """
    if len(ids) == 0:
        return []
    if steps is None:
        return sorted(set(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int).tolist()))
    wanted = [steps] if isinstance(steps, int) else list(steps)
    cols = [int(np.argmin(np.abs(ids - s))) for s in wanted]
    missing = [s for s, c in zip(wanted, cols) if ids[c] != s]
    if missing:
        raise InputError(f"steps {missing} are not in the run (recorded: {ids.min():.0f}..{ids.max():.0f})")
    return cols
