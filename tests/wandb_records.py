"""Read an offline W&B run file (``run-<id>.wandb``: a ':W&B' header, then LevelDB-log framed
protobuf records) into its history rows, summary updates and alerts, for the sink tests."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

_BLOCK = 32768


def _records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - (pos - 7) % _BLOCK  # blocks start after the 7-byte file header
        if left < 7:
            pos += left
            continue
        length, kind = struct.unpack("<HB", data[pos + 4: pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last fragment
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _complete(path: Path, timeout: float = 30.0) -> list:
    """The file's records once its ``exit`` record is there: W&B's service process may still be
    writing the offline file when ``run.finish()`` returns (seen: 7 bytes, then the whole run a
    moment later), so the reader waits for the end of the run, up to ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        try:
            recs = list(_records(path)) if path.stat().st_size > 7 else []
        except Exception:  # noqa: BLE001 - a record cut in the middle of its write: read again
            recs = []
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > end:
            return recs
        time.sleep(0.1)


def read_offline_run(run_dir: Path) -> tuple[list[dict], dict, list[tuple[str, str]]]:
    """``(history rows, final summary, alerts)`` of the offline run in ``run_dir``."""
    path = next(Path(run_dir).glob("run-*.wandb"))
    history, summary, alerts = [], {}, []
    for rec in _complete(path):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
        elif kind == "alert":
            alerts.append((rec.alert.title, rec.alert.text))
    return history, summary, alerts
