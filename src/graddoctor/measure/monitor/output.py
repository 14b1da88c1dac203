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

import difflib
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
        sinks: sink names ("jsonl", "tensorboard", "wandb") or ``Sink`` objects; one name or
            object alone stands for a one-element list.
        fsync: ``os.fsync`` the JSONL file at each write.
        history: step records kept in memory (oldest dropped); None: none with a JSONL sink,
            else 100000.
        run_id: the run's id (a log directory may hold several runs).
        write: this process writes the sinks (rank 0).

    Raises:
        InputError: an unknown sink name, or a sink object without ``write_meta``/``write_steps``/
            ``close`` (with or without ``log_dir``).
    """

    def __init__(self, log_dir: str | None, sinks: Any = ("jsonl",), fsync: bool = False,
                 history: int | None = None, run_id: str = "", write: bool = True) -> None:
        self.log_dir, self.specs, self.fsync = log_dir, sink_specs(sinks), fsync
        self.history_len, self.run_id, self.write = history, run_id, write
        self.sinks: list[Any] = []
        self.dropped: list[Any] = []  # sinks that failed: closed quietly at the end
        self.history: deque | None = None

    def open(self) -> None:
        """Create the sinks and the history (once)."""
        if self.log_dir is None and self.write and not self.sinks:  # no files: the sink objects, wandb
            self.sinks = [_make_sink(s, None, self.fsync) for s in self.specs if s not in FILE_SINKS]
        elif self.log_dir is not None and self.write and not self.sinks:
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
        """The meta line, to every sink (``_each``)."""
        self._each("write_meta", meta)

    def write_steps(self, records: list[dict]) -> None:
        """Step records (each given the run's id), to the history and every sink (``_each``)."""
        for r in records:
            r["run_id"] = self.run_id
        self._each("write_steps", records)
        self.history.extend(records)  # (after: a JSONL sink that failed now leaves them here)

    def _each(self, method: str, arg: Any) -> None:
        """Call ``method`` on every sink; a sink that raises is dropped with a warning and the
        others go on (a full disk under TensorBoard's files must not stop the JSONL log, nor the
        records in memory: without the JSONL sink the history keeps them from then on)."""
        for s in list(self.sinks):
            try:
                getattr(s, method)(arg)
            except Exception as e:  # noqa: BLE001 - one sink's failure is not the run's
                self.sinks.remove(s)
                self.dropped.append(s)
                if self.history is not None and self.history.maxlen == 0 and self.jsonl() is None:
                    self.history = deque(maxlen=100_000)  # the file stops here: the rest in memory
                warnings.warn(f"graddoctor.watch: the {type(s).__name__} sink failed ({type(e).__name__}: {e}); "
                              "it is dropped, recording goes on", stacklevel=user_level())

    def close(self) -> None:
        """Close the sinks (every one, even when one fails; the first error is raised after; the
        dropped ones quietly)."""
        for s in self.dropped:
            try:
                s.close()
            except Exception:  # noqa: BLE001, S110 - it failed before and was reported then
                pass
        self.dropped = []
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


def checked_log_dir(log_dir: Any) -> str | None:
    """``log_dir`` as a path string (None stays None); anything but a str or ``os.PathLike`` is a
    one-line ``InputError`` (bytes or an int made a directory named after their repr).

    Example:
        >>> import pathlib; checked_log_dir(pathlib.Path("runs")), checked_log_dir(None)
        ('runs', None)
    """
    if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
        raise InputError(f"log_dir must be a directory path (str or pathlib.Path), got "
                         f"{type(log_dir).__name__} {log_dir!r}")
    return None if log_dir is None else os.fspath(log_dir)


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


def sink_specs(sinks: Any) -> list[Any]:
    """``sinks`` as a checked list: a name or a ``Sink`` alone is a one-element list; an unknown
    name, or an object that is no ``Sink``, is a one-line ``InputError``.

    Example:
        >>> sink_specs("jsonl")
        ['jsonl']
    """
    from graddoctor.runlog.sinks import Sink

    if isinstance(sinks, (str, Sink)):
        sinks = [sinks]
    elif not isinstance(sinks, (list, tuple)):
        raise InputError(f"gd.watch(sinks=...) takes a list of sink names or Sink objects, got "
                         f"{type(sinks).__name__} - e.g. sinks=['jsonl', 'tensorboard']")
    for spec in sinks:
        _check_sink(spec)
    return list(sinks)


def _check_sink(spec: Any) -> None:
    """A one-line ``InputError`` unless ``spec`` is a known sink name or a ``Sink`` object."""
    from graddoctor.runlog.sinks import Sink

    if isinstance(spec, str) and spec not in SINK_NAMES:
        close = difflib.get_close_matches(spec, SINK_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown sink {spec!r}{hint} - use 'jsonl', 'tensorboard', 'wandb' or a Sink object")
    if not isinstance(spec, (str, Sink)):
        raise InputError(f"sink {spec!r} lacks write_meta/write_steps/close - see graddoctor.runlog.sinks.Sink")


def _make_sink(spec: Any, log_dir: str | None, fsync: bool) -> Any:
    from graddoctor.runlog.sinks import make_sink

    if isinstance(spec, str):
        return make_sink(spec, log_dir, **({"fsync": fsync} if spec == "jsonl" else {}))
    return spec


#: sinks that write files into ``log_dir``
FILE_SINKS = ("jsonl", "tensorboard")
#: the built-in sinks' names (``graddoctor.runlog.sinks.make_sink``)
SINK_NAMES = ("jsonl", "tensorboard", "wandb")

__all__ = ["FILE_SINKS", "SINK_NAMES", "RunOutput", "checked_log_dir", "sink_specs", "unwritable"]
