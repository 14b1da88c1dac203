"""``gd.watch``: the training monitor plus the judgement of what it recorded.

``Monitor`` (``graddoctor.measure.monitor``) records; ``Watcher`` adds ``report()``, which runs the
training-time rules (``graddoctor.diagnose.training``) over the records. The report is built
here, where the rules are: ``build_report`` also judges a run log read back from disk. A rule
module that is missing or broken raises; it is never reported as "no findings".
"""

from __future__ import annotations

import atexit
import math
import os
import warnings
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from graddoctor.diagnose.checktime.attention import weight_scale
from graddoctor.diagnose.checktime.init_scale import init_fault, output_classes
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.series import as_float
from graddoctor.errors import InputError
from graddoctor.measure.monitor.optimizers import hookable_optimizer
from graddoctor.measure.monitor.watcher import Monitor
from graddoctor.options import keywords, refuse
from graddoctor.report import Report
from graddoctor.stack import user_level

#: model -> the Watcher last attached to it (a second attach while it is attached warns)
_ATTACHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LIVE: weakref.WeakSet = weakref.WeakSet()  # every attached watcher
_EXIT_HOOKED: list = []  # the exit flush, once registered


def _flush_at_exit() -> None:
    """At interpreter exit (an uncaught exception, Ctrl-C, ``sys.exit``) each watcher still attached
    writes its buffered steps and closes its sinks: a loop that never detached lost up to
    ``flush_every`` steps. One process only: a collective at exit would wait for ranks that are gone.
    Registered at the first attach, so it runs before the exit handlers of what was set up before it
    (``wandb.init``: its run still open for the last flush)."""
    for w in list(_LIVE):
        if w.attached and w.world_size == 1:
            w._guarded(w.detach, always=True)


class Watcher(Monitor):
    """An attached training monitor whose ``report()`` judges what it recorded (see ``Monitor``).

    ``log_event`` records an event (an autofix round) in the run log and in ``report()``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[dict] = []

    def attach(self) -> Watcher:
        """Install the hooks (see ``Monitor.attach``); a model with no parameters warns: nothing to
        watch; so does a model another attached watcher already watches with the same optimizer (a
        second ``gd.watch`` on it without a ``detach`` of the first: both hook every step and each
        logs its own run; a GAN's two optimizers on one model are two runs, not a mistake)."""
        if not self.attached and next(self.root.parameters(), None) is None:
            warnings.warn(f"graddoctor.watch: the model ({type(self.root).__name__}) has no parameters, so there "
                          "is nothing to watch - pass the module that holds the weights", stacklevel=user_level())
        if not self.attached:
            other = _ATTACHED.get(self.root)
            if other is not None and other is not self and other.attached and other.optimizer is self.optimizer \
                    and not other._gate.paused:  # (a paused one: graddoctor's own sweep watches the model)
                warnings.warn(f"graddoctor.watch: another gd.watch is still attached to this model "
                              f"({type(self.root).__name__}); both hook every step and each logs its own run - "
                              "detach the first (w.detach(), or `with gd.watch(...) as w:`)", stacklevel=user_level())
            _ATTACHED[self.root] = self
            _LIVE.add(self)
            if not _EXIT_HOOKED:
                _EXIT_HOOKED.append(atexit.register(_flush_at_exit))
        return super().attach()

    def detach(self) -> None:
        """Remove the hooks (see ``Monitor.detach``)."""
        if _ATTACHED.get(self.root) is self:
            del _ATTACHED[self.root]
        _LIVE.discard(self)
        super().detach()

    def start_at(self, done: int) -> None:
        """Number the steps from ``done + 1`` (a framework's global step, or ``watch(start_step=)``).

        Args:
            done: the optimizer steps counted so far (0 for a new run, the checkpoint's step for a
                resumed one). Ignored once a step is recorded.
        """
        if self._step == 0 and isinstance(done, int) and done > 0:
            self._guarded(self._start_at, done)

    def _start_at(self, done: int) -> None:
        self._step = done
        self.forwards.next_step = done + 1  # the step the coming forwards are sampled for
        if self.attached and self.forwards.wants(done + 1):
            self.forwards.arm()

    def _setup_audit(self, mm: Any, inputs: Any) -> dict[str, Any]:
        """The init audit at the first forward (or attach, with example inputs), kept in the meta
        line for the training-time ``poor-init`` rule: ``init_audit`` (check's ``poor-init``
        findings on the weights as drawn), ``weight_scale`` (the median Linear ``std * sqrt(fan_in)``)
        and ``output_width`` (the classes / vocabulary). An audit
        that fails warns; watch goes on without it."""
        if mm is None or self.world_size > 1:  # a forward on one rank only could hang the others
            return {}
        try:
            mapping, self.forwards.mapping = self.forwards.mapping, True  # its forward is not training's
            try:
                found = init_fault(self.root, inputs, mm)
            finally:
                self.forwards.mapping = mapping
            last = mm.calls[-1] if mm.calls else None  # the model ends in nn.Softmax: softmax-before-loss reads it
            return {"output_width": output_classes(mm), "weight_scale": round(float(weight_scale(self.root)[0]), 4),
                    **({"softmax_output": last.name} if last is not None and last.type == "Softmax" else {}),
                    **({"dropout": p} if (p := heavy_dropout(self.root)) else {}),
                    "init_audit": [{**_brief(f), "remedies": list(f.remedies)} for f in found]}
        except Exception as e:  # noqa: BLE001 - never break the training loop
            warnings.warn(f"graddoctor.watch: the init audit failed ({type(e).__name__}: {e}); watch goes on "
                          "without it", stacklevel=user_level())
            return {}

    def log_event(self, kind: str, record: dict[str, Any], findings: list[Any] = ()) -> dict:
        """Record an event: kept for ``report()`` (``data["events"]``) and written at once to every
        sink that has ``write_event`` (the JSONL run log: one line, flushed; TensorBoard: text).

        A sink that fails warns; the event is kept and training goes on.

        Args:
            kind: what happened, e.g. "autofix".
            record: the event's fields (JSON-able; ``step`` defaults to the current step).
            findings: the findings that caused it (``Finding`` objects or dicts), stored as
                ``{"code", "severity", "message", "layers", "step"}``.

        Returns:
            The event record (``{"type": "event", "kind", "step", ..., "findings", "run_id"}``).

        Example:
            >>> import torch, graddoctor as gd
            >>> w = gd.watch(torch.nn.Linear(2, 2))
            >>> w.log_event("note", {"message": "step 0: a note"})["kind"]
            'note'
            >>> w.report().data["events"][0]["message"]; w.detach()
            'step 0: a note'
        """
        event = {"type": "event", "kind": kind, **record, "step": int(record.get("step", self._step)),
                 "findings": [_brief(f) for f in findings], "run_id": self.run_id}
        self.events.append(event)
        for sink in self.output.sinks:
            try:
                getattr(sink, "write_event", lambda e: None)(event)
            except Exception as e:  # noqa: BLE001 - never break the training loop
                warnings.warn(f"graddoctor: {type(sink).__name__} could not write the {kind} event ({e})",
                              stacklevel=2)
        return event

    def report(self) -> Report:
        """Judge what was recorded so far: the training-time rules over ``self.records()``.

        Returns:
            ``Report(source="watch")``: the findings, and the records in ``data``
            (``meta``, ``steps``).

        Raises:
            Exception: any error of a rule (see ``build_report``).

        Example:
            >>> import torch, graddoctor as gd
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
            >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
            >>> with gd.watch(net, opt) as w:
            ...     loss = net(torch.randn(4, 3)).sum(); loss.backward(); opt.step(); w.step(loss)
            >>> w.report().findings
            []
        """
        meta, steps = self.records()
        report = build_report(meta, steps, self.events)
        if not steps and self._count.idle:  # w.step() calls, but the watched optimizer never stepped
            report.data["idle_wsteps"] = {"calls": self._count.idle, "optimizer": type(self.optimizer).__name__}
        if self.rank != 0:  # the records are written and judged on rank 0
            report.data["rank"] = self.rank
        for sink in self.output.sinks:  # sinks that show findings (W&B: summary and alerts)
            try:
                getattr(sink, "write_findings", lambda findings: None)(report.findings)
            except Exception as e:  # noqa: BLE001 - a sink's failure never hides the report
                warnings.warn(f"graddoctor: {type(sink).__name__} could not show the findings ({e})", stacklevel=2)
        return report


@contextmanager
def paused_watchers(optimizer: Any) -> Iterator[None]:
    """The watchers attached with ``optimizer`` record no step inside (graddoctor's own steps, such
    as ``gd.lr_find``'s sweep, are no training steps: a watched loop recorded a sweep's 40 steps
    as its own, and autofix read its divergence as a blow-up and lowered the user's rate); they
    stay attached.

    Example:
        >>> net = nn.Linear(2, 1); opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with watch(net, opt) as w:
        ...     with paused_watchers(opt):
        ...         net(torch.ones(1, 2)).sum().backward(); opt.step()
        >>> w.records()[1]
        []
    """
    inner = hookable_optimizer(optimizer)
    held = [w for w in list(_LIVE) if w.attached and w.optimizer is inner and not w._gate.paused]
    for w in held:
        w._gate.paused = True
    try:
        yield
    finally:
        for w in held:
            w._gate.paused = False
            if w.attached:
                _ATTACHED[w.root] = w  # (the sweep's own watcher held the slot)


def build_report(meta: dict, steps: list[dict], events: list[dict] | None = None) -> Report:
    """Judge one run's records: every training-time rule, then a ``Report(source="watch")``.

    Args:
        meta: the run log's meta record (``Watcher.records()[0]`` or ``runlog.read_run``).
        steps: the step records.
        events: the run's event records (``Watcher.log_event``, ``runlog.read_events``), if any.

    Returns:
        ``Report(source="watch")`` with the findings of ``graddoctor.diagnose.training`` and
        the records in ``data`` (``meta``, ``steps``; with events also ``events``, in step
        order, ``autofix``: the autofix ones, and ``after_fix``: the run after the last fix
        judged on its own, ``after_fix()``).

    Raises:
        InputError: records that are not a meta dict and a list of step dicts.
        Exception: any error raised by a rule propagates: a broken rule never reads as "ok".

    Example:
        >>> steps = [{"step": 0, "loss": 1.0}, {"step": 1, "loss": float("nan")}]
        >>> build_report({"layers": [], "activations": []}, steps).codes
        {'non-finite'}
    """
    data: dict[str, Any] = {"meta": meta, "steps": steps}
    if events:
        data["events"] = sorted((dict(e) for e in events), key=lambda e: e.get("step", 0))
        data["autofix"] = [e for e in data["events"] if e.get("kind") == "autofix"]
        after = after_fix(meta, steps, data["autofix"])
        if after is not None:
            data["after_fix"] = after
    return Report(training_findings(meta, steps), source="watch", data=data)


#: steps after the last fix needed to judge the repaired run on its own
AFTER_FIX_MIN_STEPS = 20


def after_fix(meta: dict, steps: list[dict], rounds: list[dict]) -> dict | None:
    """The repaired run judged on its own: the findings over the steps after the last autofix round
    that stayed (not undone), since the report's findings cover the whole run, the broken steps
    before the fix included. None without such a round; ``findings`` None with fewer than
    ``AFTER_FIX_MIN_STEPS`` steps after it.

    Example:
        >>> rounds = [{"step": 10, "remedies": ["relu"]}]
        >>> steps = [{"step": t, "loss": 2.0 / t} for t in range(1, 41)]
        >>> after_fix({"layers": [], "activations": []}, steps, rounds)
        {'from_step': 10, 'steps': 30, 'findings': [], 'loss_start': 0.1538, 'loss_end': 0.05635}
    """
    undone = {e.get("undo") for e in rounds if e.get("undo") is not None} | {
        t for e in rounds for t in e.get("undone") or []}  # fixes judged together are undone together
    kept = [int(e["step"]) for e in rounds if isinstance(e.get("step"), int) and e.get("remedies")
            and e.get("remedies") != ["undo"] and e["step"] not in undone]
    if not kept:
        return None
    later = [s for s in steps if s.get("step", 0) > max(kept)]
    found = (None if len(later) < AFTER_FIX_MIN_STEPS
             else [_brief(f) for f in training_findings(meta, later)])
    out = {"from_step": max(kept), "steps": len(later), "findings": found}
    loss = [as_float(s.get("loss")) for s in later if "loss" in s]
    if len(loss) >= AFTER_FIX_MIN_STEPS and all(math.isfinite(v) for v in loss[-10:]):  # where the repaired
        start, end = float(np.median(loss[:5])), float(np.median(loss[-10:]))  # run went (a slow start?)
        out.update(loss_start=float(f"{start:.4g}"), loss_end=float(f"{end:.4g}"))
    return out


def heavy_dropout(model: nn.Module) -> float | None:
    """The largest dropout rate of the model's ``nn.Dropout*`` modules when it is 0.5 or more (the
    plateau-at-chance message names it), else None.

    Example:
        >>> heavy_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.9))), heavy_dropout(nn.Dropout(0.1))
        (0.9, None)
    """
    p = max((float(m.p) for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)), default=0.0)
    return p if p >= 0.5 else None


def _brief(f: Any) -> dict[str, Any]:
    """A finding as the event stores it: code, severity, message, layers, step."""
    d = f if isinstance(f, dict) else f.to_dict()
    return {k: d.get(k) for k in ("code", "severity", "message", "layers", "step")}


#: the Watcher class of ``watch(..., autofix=...)``, registered by ``graddoctor.fix.autofix``
#: (a higher layer: this module cannot import it)
_AUTOFIX: list[type] = []


def register_autofix(cls: type) -> None:
    """Make ``cls`` (a ``Watcher`` subclass taking ``autofix=``) the class of ``watch(..., autofix=...)``."""
    _AUTOFIX[:] = [cls]


def autofix_watcher() -> type | None:
    """The registered autofix Watcher class, or None."""
    return _AUTOFIX[0] if _AUTOFIX else None


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    log_dir: str | os.PathLike | None = None,
    *,
    autofix: bool | list[str] = False,
    start_step: int = 0,
    **kwargs: Any,
) -> Watcher:
    """Start watching ``model``: returns an attached ``Watcher`` (also a context manager).

    Args:
        model: the model.
        optimizer: its optimizer (gradients read in its step pre-hook); None: ``w.step()`` marks steps.
        log_dir: where ``watch.jsonl`` goes (None: in memory only).
        autofix: True (or a list of remedy ids): repair ``model`` and ``optimizer`` in place
            between two steps when an error finding with a gradient-flow cause fires
            (``graddoctor.fix.autofix``; needs ``optimizer``).
        start_step: the steps already done (a run resumed from a checkpoint into the same
            ``log_dir``): the first step recorded is ``start_step + 1``, as in the framework
            callbacks; autofix judges the resumed steps on their own.
        **kwargs: see ``Watcher`` (example_inputs, flush_every, update_every, activation_every,
            weight_every, dead_window, output_grads, scaler, sinks, fsync, history).

    Returns:
        The attached ``Watcher``: call ``w.step(loss)`` each step, ``w.report()`` for the
        findings, ``w.detach()`` (or leave the ``with`` block) to remove every hook.

    Raises:
        InputError: ``model`` is not an ``nn.Module``, ``optimizer`` not an optimizer, an
            unknown option (the close valid ones named), an option out of range, or a sink
            without the sink methods.

    Example:
        >>> import torch, graddoctor as gd
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with gd.watch(net, opt) as w:
        ...     loss = net(torch.randn(4, 3)).sum(); loss.backward(); opt.step(); w.step(loss)
        >>> w.report().source
        'watch'
    """
    fixing = autofix is not False and autofix is not None
    cls = autofix_watcher()
    _check_options(kwargs, cls if fixing else Watcher, cls)
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
        raise InputError(f"watch(): start_step must be an int >= 0 (the steps already done), got {start_step!r}")
    if fixing:
        if cls is None:  # pragma: no cover - graddoctor/__init__ imports graddoctor.fix
            raise InputError("watch(autofix=...) needs graddoctor.fix: import graddoctor first")
        return _started(cls(model, optimizer, log_dir, autofix=autofix, **kwargs), start_step).attach()
    return _started(Watcher(model, optimizer, log_dir, **kwargs), start_step).attach()


def _started(w: Watcher, done: int) -> Watcher:
    """``w`` numbering its steps from ``done + 1`` (autofix's window and warm-up start there too)."""
    w.start_at(done)
    if done and hasattr(w, "_since"):  # an AutofixWatcher: the resumed run is judged on its own steps
        w._since = w._checked = done
    return w


def _check_options(kwargs: dict[str, Any], cls: type | None, autofix_cls: type | None) -> None:
    """A one-line ``InputError`` for a keyword ``cls`` does not take (the close valid ones named)."""
    valid = keywords(cls) | {"autofix"} if cls is not None else set()
    unknown = [k for k in kwargs if k not in valid]
    if cls is not None and unknown:
        refuse("gd.watch", unknown[0], valid, keywords(autofix_cls) if autofix_cls is not None else set())


__all__ = ["Watcher", "autofix_watcher", "build_report", "paused_watchers", "register_autofix", "watch"]
