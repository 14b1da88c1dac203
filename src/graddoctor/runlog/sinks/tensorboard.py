"""TensorBoard sink: the step records as scalars.

Tags: ``loss``, ``lr`` (the first param group's; ``lr/group<i>`` each group's where the record
holds several in ``lrs``), ``grad_norm/<layer>``, ``weight_norm/<layer>``,
``update_ratio/<layer>``, ``nonfinite/<layer>`` (only when > 0), ``skipped``,
``act/<site>/<stat>``, events (autofix rounds) as text ``graddoctor/<kind>``, and the activation histograms as TensorBoard histograms
``act_hist/<site>`` (``add_histogram_raw``, on sampled steps). Non-finite values are written as they are (TensorBoard
shows NaN/Inf); null (frozen/unused) layers are not written.

Example:
    >>> import tempfile
    >>> s = TensorBoardSink(tempfile.mkdtemp())
    >>> s.write_steps([{"type": "step", "step": 1, "loss": 0.5, "grad_norm": {"0": 1.0}}])
    >>> s.close()
"""

from __future__ import annotations

import os
from typing import Any

from graddoctor.errors import InputError
from graddoctor.runlog.read import step_lrs

_PER_LAYER = ("grad_norm", "weight_norm", "update_norm", "update_ratio", "out_grad_norm")


def _add_histogram(w: Any, tag: str, hist: dict[str, Any] | None, step: int) -> None:
    """A recorded histogram (``{"lo", "hi", "counts"}``) as a TensorBoard histogram."""
    counts = (hist or {}).get("counts") or []
    total = float(sum(counts))
    if not total:
        return
    lo, hi, n = float(hist["lo"]), float(hist["hi"]), len(counts)
    edges = [lo + (hi - lo) * (i + 1) / n for i in range(n)]  # right edges, as TensorBoard wants
    centers = [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
    used = [i for i, c in enumerate(counts) if c]
    mean = sum(centers[i] * counts[i] for i in used) / total
    w.add_histogram_raw(tag, min=centers[used[0]], max=centers[used[-1]], num=total,
                        sum=mean * total, sum_squares=sum(centers[i] ** 2 * counts[i] for i in used),
                        bucket_limits=edges, bucket_counts=list(counts), global_step=step)


class TensorBoardSink:
    """Write scalars with ``torch.utils.tensorboard.SummaryWriter`` into ``log_dir``."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise InputError("the TensorBoard sink needs the tensorboard package - "
                             "pip install 'graddoctor[tensorboard]'") from e
        self._cls = SummaryWriter
        self.log_dir = str(log_dir)
        self._w = None

    @property
    def writer(self) -> Any:
        if self._w is None:
            self._w = self._cls(self.log_dir)
        return self._w

    def write_meta(self, meta: dict[str, Any]) -> None:
        names = ", ".join(x["name"] or "<model>" for x in meta.get("layers", []))
        self.writer.add_text("graddoctor/layers", names)

    def write_steps(self, steps: list[dict[str, Any]]) -> None:
        w = self.writer
        for rec in steps:
            t = rec["step"]
            for key in ("loss", "lr"):
                if rec.get(key) is not None:
                    w.add_scalar(key, rec[key], t)
            lrs = step_lrs(rec)
            for g, v in enumerate(lrs if len(lrs) > 1 else []):  # several param groups: each one's rate
                if v is not None:
                    w.add_scalar(f"lr/group{g}", v, t)
            w.add_scalar("skipped", float(bool(rec.get("skipped"))), t)
            for key in _PER_LAYER:
                for layer, v in (rec.get(key) or {}).items():
                    if v is not None:
                        w.add_scalar(f"{key}/{layer or '<model>'}", v, t)
            for layer, v in (rec.get("nonfinite") or {}).items():
                if v:
                    w.add_scalar(f"nonfinite/{layer or '<model>'}", v, t)
            for site, stats in (rec.get("act") or {}).items():
                for k, v in stats.items():
                    if k == "hist":
                        _add_histogram(w, f"act_hist/{site}", v, t)
                    elif v is not None:
                        w.add_scalar(f"act/{site}/{k}", v, t)
        w.flush()

    def write_event(self, event: dict[str, Any]) -> None:
        """An event (an autofix round) as text ``graddoctor/<kind>`` at its step."""
        text = event.get("message") or f"step {event['step']}: {event.get('kind')}"
        self.writer.add_text(f"graddoctor/{event.get('kind', 'event')}", text, event["step"])
        self.writer.flush()

    def close(self) -> None:
        if self._w is not None:
            self._w.close()
            self._w = None
