"""The default sink: ``<log_dir>/watch.jsonl``, one JSON object per line.

Each flush appends its lines with one ``write`` and flushes the file (and
``os.fsync``s it when ``fsync=True``), so a killed process leaves every complete
line readable; ``graddoctor.runlog.read_run`` skips a partial last line. A run appending to the
log of a killed one starts on a new line, so its first record is not glued to the partial one. A file removed
while the run goes on (its ``log_dir`` deleted) is started again at the next flush, with the
meta line first.

Example:
    >>> import tempfile
    >>> s = JsonlSink(tempfile.mkdtemp())
    >>> s.write_meta({"type": "meta", "version": 1, "run_id": "x", "layers": []})
    >>> s.write_steps([{"type": "step", "step": 1, "loss": 0.5}]); s.close()
    >>> from graddoctor.runlog import read_run
    >>> read_run(s.path)[1][0]["loss"]
    0.5
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from graddoctor.runlog.format import FILENAME, encode


def _ends_mid_line(path: Path) -> bool:
    """Whether ``path`` exists and its last byte is not a newline (a writer killed mid-line)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            return f.read(1) != b"\n"
    except OSError:
        return False


class JsonlSink:
    """Append records to ``<log_dir>/watch.jsonl``.

    Args:
        log_dir: directory (created if missing).
        fsync: also ``os.fsync`` after each flush (survives a machine crash, costs a disk sync).
    """

    def __init__(self, log_dir: str | os.PathLike, fsync: bool = False) -> None:
        self.path = Path(log_dir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._f = None
        self._meta: dict[str, Any] | None = None  # written again when the file was removed

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._f is not None and not self.path.exists():  # log_dir removed mid-run: start it again
            f, self._f = self._f, None
            try:
                f.close()
            except OSError:
                pass
            if self._meta is not None and records[0] is not self._meta:
                records = [self._meta, *records]
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_mid_line(self.path)  # a killed run's partial last line: do not extend it
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open across flushes
            if torn:
                self._f.write("\n")
        self._f.write("".join(encode(r) + "\n" for r in records))
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())

    def write_meta(self, meta: dict[str, Any]) -> None:
        self._meta = meta
        self._write([meta])

    def write_steps(self, steps: list[dict[str, Any]]) -> None:
        if steps:
            self._write(steps)

    def write_event(self, event: dict[str, Any]) -> None:
        """One event line (an autofix round), written and flushed at once, like a flush of steps."""
        self._write([event])

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            f.close()
