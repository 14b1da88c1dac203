"""The watch run log: JSON lines, one meta record then one record per step.

Format: see ``docs/runlog.md`` (meta: ``{"type": "meta", "version": 2, "run_id",
"layers", "activations", "config"}``; steps: ``{"type": "step", "step", "loss",
"skipped", "lr", "lrs", "grad_norm", ...}``; ``lr`` is the first param group's rate, ``lrs``,
where recorded, every group's: read both with ``step_lrs``; events, e.g. an autofix round: ``{"type": "event",
"kind", "step", ...}``, read by ``read.read_events``). Non-finite floats are written as the strings
``"nan"``, ``"inf"``, ``"-inf"`` (``format.encode``) and decoded back to floats by
``read.read_run``. Sinks (where watch sends the records) are in ``runlog.sinks``.

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

from graddoctor.runlog.format import FILENAME, FLOAT_MAPS, VERSION, decode_floats, encode
from graddoctor.runlog.read import (
    as_float,
    carry_weights,
    is_nonfinite,
    list_runs,
    mark_unfrozen,
    read_events,
    read_run,
    run_path,
    step_lrs,
)

__all__ = [
    "FILENAME", "FLOAT_MAPS", "VERSION", "as_float", "carry_weights", "decode_floats", "encode",
    "is_nonfinite", "list_runs", "mark_unfrozen", "read_events", "read_run", "run_path", "step_lrs",
]
