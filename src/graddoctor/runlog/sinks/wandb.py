"""W&B sink: the step records as a W&B run's history, findings as its summary and alerts.

Key layout (stable), all against the custom x-axis ``graddoctor/step`` (so the user's own
``wandb.log`` steps are untouched): ``graddoctor/loss``, ``graddoctor/lr`` (and
``graddoctor/lr/group<i>`` per param group where the record holds several in ``lrs``),
``graddoctor/skipped``, ``graddoctor/<stat>/<layer>`` for ``grad_norm``, ``weight_norm``,
``update_norm``, ``update_ratio``, ``out_grad_norm`` and ``nonfinite`` (only when > 0),
``graddoctor/act/<site>/<stat>`` and ``graddoctor/act_hist/<site>`` (a ``wandb.Histogram`` of the
site's fixed-bin activation histogram, on sampled steps). The model's root layer is
``<model>``. Writes happen at watch's flushes only (host floats: no device sync per step). Once
the user's own ``wandb.log`` calls move the run's step, each flush adds its last record to the
user's current step instead (``write_steps``): W&B cannot write to past steps.
Findings (``write_findings``, called by ``Watcher.report()``): ``graddoctor/findings`` (codes)
and ``graddoctor/finding/<code>`` (message) in the run summary, and a W&B alert per warning or
error. Events (``write_event``: autofix rounds): their messages as the summary's ``graddoctor/events``.

Example:
    >>> keys = step_payload({"step": 3, "loss": 0.5, "grad_norm": {"": 1.0, "fc": None}})
    >>> sorted(keys)
    ['graddoctor/grad_norm/<model>', 'graddoctor/loss', 'graddoctor/skipped', 'graddoctor/step']
"""

from __future__ import annotations

import math
import os
from typing import Any

from graddoctor.errors import InputError
from graddoctor.runlog.read import step_lrs

PREFIX = "graddoctor"
_PER_LAYER = ("grad_norm", "weight_norm", "update_norm", "update_ratio", "out_grad_norm")


def step_payload(rec: dict[str, Any], histogram: Any = None) -> dict[str, Any]:
    """One step record as a ``wandb.log`` payload (see the key layout above).

    Args:
        rec: a step record.
        histogram: ``wandb.Histogram`` (or any callable ``(counts, edges) -> value``) for the
            activation histograms; None: histograms left out.

    Returns:
        ``{key: value}``; null (frozen, unused) layers are left out.
    """
    out: dict[str, Any] = {f"{PREFIX}/step": rec["step"], f"{PREFIX}/skipped": float(bool(rec.get("skipped")))}
    for key in ("loss", "lr"):
        if rec.get(key) is not None:
            out[f"{PREFIX}/{key}"] = rec[key]
    lrs = step_lrs(rec)
    for g, v in enumerate(lrs if len(lrs) > 1 else []):  # several param groups: each one's rate
        if v is not None:
            out[f"{PREFIX}/lr/group{g}"] = v
    for key in _PER_LAYER:
        for layer, v in (rec.get(key) or {}).items():
            if v is not None:
                out[f"{PREFIX}/{key}/{layer or '<model>'}"] = v
    for layer, v in (rec.get("nonfinite") or {}).items():
        if v:
            out[f"{PREFIX}/nonfinite/{layer or '<model>'}"] = v
    for site, stats in (rec.get("act") or {}).items():
        for k, v in stats.items():
            if k == "hist":
                if histogram is not None and v:
                    out[f"{PREFIX}/act_hist/{site}"] = histogram(v["counts"], hist_edges(v))
            elif v is not None and not (isinstance(v, float) and math.isnan(v)):
                out[f"{PREFIX}/act/{site}/{k}"] = v
    return out


def hist_edges(hist: dict[str, Any]) -> list[float]:
    """The bin edges of a recorded activation histogram (``{"lo", "hi", "counts"}``).

    Example:
        >>> hist_edges({"lo": 0.0, "hi": 1.0, "counts": [3, 0, 1, 5]})
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    lo, hi, n = float(hist["lo"]), float(hist["hi"]), len(hist["counts"])
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


class WandbSink:
    """Log watch's records into a W&B run.

    Args:
        run: the ``wandb`` run; None: the active ``wandb.run`` at the first write, else a new
            run (``wandb.init(project="graddoctor", dir=log_dir)``, finished at ``close``).
        log_dir: directory for a run this sink starts itself.

    Raises:
        InputError: wandb is not installed.
    """

    def __init__(self, run: Any = None, log_dir: str | os.PathLike | None = None) -> None:
        try:
            import wandb
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise InputError("the W&B sink needs the wandb package - pip install 'graddoctor[wandb]'") from e
        self._wandb, self._run, self.log_dir = wandb, run, log_dir
        self._owned = self._defined = self._shared = False
        self._seen: int | None = None  # the run's step after graddoctor's last write
        self._events: list[str] = []

    @property
    def run(self) -> Any:
        if self._run is None:
            self._run = self._wandb.run
            if self._run is None:
                kw = {"dir": str(self.log_dir)} if self.log_dir is not None else {}
                self._run, self._owned = self._wandb.init(project="graddoctor", **kw), True
        if not self._defined:
            self._run.define_metric(f"{PREFIX}/step")
            self._run.define_metric(f"{PREFIX}/*", step_metric=f"{PREFIX}/step")
            self._defined = True
        return self._run

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.run.config.update({f"{PREFIX}/config": meta.get("config", {}),
                                f"{PREFIX}/layers": [x["name"] or "<model>" for x in meta.get("layers", [])]},
                               allow_val_change=True)
        self._seen = getattr(self.run, "step", None)

    def write_steps(self, steps: list[dict[str, Any]]) -> None:
        """Each record as a W&B step of its own while only graddoctor logs to the run. Once the
        user's own ``wandb.log`` moves the run's step, only the flush's last record is added to the
        user's current step (``commit=False``): W&B writes the current and next step only, so
        committed records would push the step past the user's next ``step=`` and W&B would drop
        the user's points. The JSONL log keeps every record."""
        run = self.run
        now = getattr(run, "step", None)
        self._shared = self._shared or (self._seen is not None and now is not None and now != self._seen)
        if self._shared:
            if steps:
                run.log(step_payload(steps[-1], self._histogram), commit=False)
        else:
            for rec in steps:
                run.log(step_payload(rec, self._histogram))
        self._seen = getattr(run, "step", None)

    def _histogram(self, counts: list[float], edges: list[float]) -> Any:
        return self._wandb.Histogram(np_histogram=(counts, edges))

    def write_findings(self, findings: list[Any]) -> None:
        """Findings into the run summary, and one alert per warning or error."""
        run = self._run if self._run is not None else self._wandb.run
        if run is None:
            return
        run.summary[f"{PREFIX}/findings"] = sorted({f.code for f in findings})
        for f in findings:
            run.summary[f"{PREFIX}/finding/{f.code}"] = f.message
            if f.severity in ("warning", "error"):
                level = self._wandb.AlertLevel.ERROR if f.severity == "error" else self._wandb.AlertLevel.WARN
                run.alert(title=f"graddoctor: {f.code}", text=f.message, level=level, wait_duration=0)

    def write_event(self, event: dict[str, Any]) -> None:
        """An event (an autofix round): its message appended to the run summary's ``graddoctor/events``."""
        self._events.append(event.get("message") or f"step {event['step']}: {event.get('kind')}")
        self.run.summary[f"{PREFIX}/events"] = list(self._events)

    def close(self) -> None:
        if self._owned and self._run is not None:
            self._run.finish()
            self._run, self._owned, self._defined = None, False, False


__all__ = ["PREFIX", "WandbSink", "hist_edges", "step_payload"]
