"""The run-log line format: one JSON object per line, non-finite floats as strings.

``VERSION`` is written in each meta line; ``FILENAME`` is the file watch writes in its
``log_dir``. The record layout is in ``docs/runlog.md``.

Example:
    >>> encode({"type": "step", "step": 1, "loss": float("inf")})
    '{"type":"step","step":1,"loss":"inf"}'
    >>> decode_floats({"loss": "inf", "act": ["nan", "tanh"]})
    {'loss': inf, 'act': [nan, 'tanh']}
"""

from __future__ import annotations

import json
import math
from typing import Any

from graddoctor.report import jsonable

VERSION = 3  # 2: weight_norm written on measured steps only (read_run carries it forward); 3: run_id on steps
# Event lines ({"type": "event"}, autofix rounds) came within version 3: they add a record type and
# change no existing one, so older readers still read the steps (they skip the events as malformed
# lines) and a version bump would only make them refuse the whole file.
FILENAME = "watch.jsonl"
#: the strings non-finite floats are written as, and their values
NONFINITE: dict[str, float] = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
#: keys of a step record whose values are per-layer / per-site float maps
FLOAT_MAPS = ("grad_norm", "weight_norm", "update_norm", "update_ratio", "out_grad_norm")


def encode(record: dict[str, Any]) -> str:
    """One record as one JSON line (no newline); non-finite floats become "nan"/"inf"/"-inf".

    Plain records go straight to the C encoder; only a record that holds a non-finite float
    or a non-JSON type takes the slower ``report.jsonable`` path.

    Args:
        record: a meta or step record.

    Returns:
        The line.

    Example:
        >>> encode({"step": 2, "lr": 0.1})
        '{"step":2,"lr":0.1}'
    """
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(jsonable(record), separators=(",", ":"), allow_nan=False)


def decode_floats(obj: Any) -> Any:
    """``obj`` with the strings "nan"/"inf"/"-inf" turned back into floats, recursively.

    Args:
        obj: a decoded JSON value.

    Returns:
        The same structure (new dicts and lists) with non-finite floats restored.

    Example:
        >>> decode_floats({"grad_norm": {"0": "-inf", "1": 2.0}})
        {'grad_norm': {'0': -inf, '1': 2.0}}
    """
    if isinstance(obj, dict):
        return {k: decode_floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_floats(v) for v in obj]
    if isinstance(obj, str) and obj in NONFINITE:
        return NONFINITE[obj]
    return obj


__all__ = ["FILENAME", "FLOAT_MAPS", "NONFINITE", "VERSION", "decode_floats", "encode"]
