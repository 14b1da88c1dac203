"""Where watch's records go: the sinks (rank 0 only) and a bounded in-memory history.

With a JSONL sink no history is kept by default: ``RunOutput.read`` reads the run back
from the file.

Example:
    >>> out = RunOutput(None, ["jsonl"], run_id="r1")
    >>> out.open(); out.write_steps([{"type": "step", "step": 1}])
    >>> out.read({"type": "meta"})[1][0]["step"]
    1
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from typing import Any

from graddoctor.errors import InputError
from graddoctor.runlog import carry_weights, mark_unfrozen, read_run
from graddoctor.stack import user_level


class RunOutput:
    """The sinks and the history of one watched run.

    Args:
        log_dir: directory of the sinks' files; None: records kept in memory only.
        sinks: sink names ("jsonl", "tensorboard") or ``Sink`` objects.
        fsync: ``os.fsync`` the JSONL file at each write.
        history: step records kept in memory (oldest dropped); None: none with a JSONL sink,
            else 100000.
        run_id: the run's id (a log directory may hold several runs).
        write: this process writes the sinks (rank 0).

    Raises:
        InputError: (at ``open``) a sink object without ``write_meta``/``write_steps``/``close``.
    """

    def __init__(self, log_dir: str | None, sinks: tuple | list = ("jsonl",), fsync: bool = False,
                 history: int | None = None, run_id: str = "", write: bool = True) -> None:
        self.log_dir, self.specs, self.fsync = log_dir, list(sinks), fsync
        self.history_len, self.run_id, self.write = history, run_id, write
        self.sinks: list[Any] = []
        self.history: deque | None = None

    def open(self) -> None:
        """Create the sinks and the history (once)."""
        if self.log_dir is not None and self.write and not self.sinks:
            specs = self.specs
            why = unwritable(self.log_dir) if any(s in FILE_SINKS for s in specs if isinstance(s, str)) else None
            if why:  # warned, not raised: the user's training goes on, its records in memory
                warnings.warn(f"graddoctor.watch: log_dir {self.log_dir!r} cannot be written ({why}): the "
                              "records stay in memory only (w.report() reads them) - pass a log_dir you can "
                              "write to", stacklevel=user_level())
                specs = [s for s in specs if not (isinstance(s, str) and s in FILE_SINKS)]
            self.sinks = [_make_sink(s, self.log_dir, self.fsync) for s in specs]
        if self.history is None:
            n = self.history_len
            self.history = deque(maxlen=n if n is not None else 0 if self.jsonl() else 100_000)

    def write_meta(self, meta: dict) -> None:
        """The meta line, to every sink."""
        for s in self.sinks:
            s.write_meta(meta)

    def write_steps(self, records: list[dict]) -> None:
        """Step records (each given the run's id), to the history and every sink."""
        for r in records:
            r["run_id"] = self.run_id
        self.history.extend(records)
        for s in self.sinks:
            s.write_steps(records)

    def close(self) -> None:
        """Close the sinks (every one, even when one fails; the first error is raised after)."""
        error: Exception | None = None
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - raised below, after the other sinks closed
                error = error or e
        if error is not None:
            raise error

    def read(self, meta: dict | None) -> tuple[dict, list[dict]]:
        """``(meta, steps)``: from the JSONL file when no history is kept, else from memory."""
        sink = self.jsonl()
        if sink is not None and self.history.maxlen == 0 and sink.path.exists():
            meta, steps = read_run(sink.path, run=self.run_id)
            return meta, steps
        steps = carry_weights(list(self.history or []))
        return mark_unfrozen(dict(meta or {}), steps), steps

    def jsonl(self) -> Any:
        """The JSONL sink, or None."""
        from graddoctor.runlog.sinks.jsonl import JsonlSink

        return next((s for s in self.sinks if isinstance(s, JsonlSink)), None)


def unwritable(log_dir: str) -> str | None:
    """Why files cannot be written in ``log_dir`` (created if missing), or None.

    Example:
        >>> import tempfile; unwritable(tempfile.mkdtemp()) is None
        True
    """
    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as e:
        return f"{type(e).__name__}: {e.strerror or e}"
    if not os.path.isdir(log_dir) or not os.access(log_dir, os.W_OK | os.X_OK):
        return "no write permission"
    return None


def _make_sink(spec: Any, log_dir: str, fsync: bool) -> Any:
    from graddoctor.runlog.sinks import Sink, make_sink

    if isinstance(spec, str):
        return make_sink(spec, log_dir, **({"fsync": fsync} if spec == "jsonl" else {}))
    if not isinstance(spec, Sink):
        raise InputError(f"sink {spec!r} lacks write_meta/write_steps/close - see graddoctor.runlog.sinks.Sink")
    return spec


#: sinks that write files into ``log_dir``
FILE_SINKS = ("jsonl", "tensorboard")

__all__ = ["FILE_SINKS", "RunOutput", "unwritable"]
