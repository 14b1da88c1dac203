"""``GradDoctorCallback`` for the Hugging Face ``Trainer`` (through Accelerate's wrappers).

The Trainer clips the gradients (``max_grad_norm``) *before* ``on_pre_optimizer_step``, so that
event sees clipped gradients. The callback reads them earlier, at the end of the backward pass
of the micro-batch that completes the step (Accelerate's ``sync_gradients``): accumulated over
``gradient_accumulation_steps``, before clipping. A one-parameter post-accumulate hook queues
that read at the end of the backward pass (a Python call per backward, not per parameter). If it
did not fire for a step (the hooked parameter got no gradient), the step is read at
``on_pre_optimizer_step`` instead. The loss comes from ``on_log`` (``logging_steps=1`` gives
every step's loss; otherwise the logged mean goes to the logged step, and one warning line at
``on_train_begin`` says so: the Trainer's default, 500, leaves a short run with no loss). With clipping, the
threshold is in ``meta["config"]["max_grad_norm"]`` and ``records()`` adds to each step the
clip the Trainer applied: ``clip = {"max_norm", "norm", "coef"}`` (``coef``: the factor
``clip_grad_norm_`` scaled every gradient by, from the recorded pre-clip norms). The recorded
step numbers are the Trainer's ``state.global_step`` after the step (its logs' numbering):
``train(resume_from_checkpoint=...)`` continues it, as a run of its own in the run log.

``GradDoctorCallback(autofix=True)`` also repairs the Trainer's model and optimizer in place
between two steps, as ``gd.watch(..., autofix=True)`` does (``integrations.autofixing``; the
Trainer's learning-rate schedule is scaled with a lowered rate). Autofix judges the loss of
every step, so it needs ``logging_steps=1``; it is off (one warning line, watching goes on)
without it and on several processes.

Example:
    >>> cb = GradDoctorCallback(flush_every=10)
    >>> cb.watcher is None  # attached at on_train_begin
    True
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from typing import Any

import torch

from graddoctor.errors import InputError
from graddoctor.fix.autofix.actions import check_allowed
from graddoctor.integrations.autofixing import check_options, framework_watcher
from graddoctor.integrations.stepping import HookedWatcher
from graddoctor.report import Report

try:
    from transformers import TrainerCallback
except ImportError as e:  # pragma: no cover - depends on the environment
    raise InputError("graddoctor.integrations.transformers needs transformers - "
                     "pip install 'graddoctor[transformers]'") from e

#: callbacks with a watcher attached: the Trainer has no exception event, so a train() that raised
#: leaves one attached until the next on_train_begin on its model (or the interpreter's exit) closes it
_OPEN: weakref.WeakSet = weakref.WeakSet()


def _strategy(args: Any) -> str:
    """The Trainer's logging strategy as a string ("steps", "epoch", "no")."""
    return str(getattr(args.logging_strategy, "value", args.logging_strategy))


class GradDoctorCallback(TrainerCallback):
    """Watch gradient flow in a Hugging Face ``Trainer``: per-layer gradient norms at every
    optimizer step (pre-clip), findings warned at the end of training.

    Args:
        log_dir: directory for ``watch.jsonl`` (read it with ``graddoctor watch-report``);
            None: records kept in memory only.
        autofix: True (or a list of remedy ids): repair in place during ``train`` (see the
            module docstring); its events are in ``report().data["autofix"]``.
        **watch_options: passed to ``gd.watch`` (``flush_every``, ``activation_every``, ``sinks``, ...).

    Raises:
        InputError: a bad ``autofix`` value, or an unknown watch option (the close valid ones
            named: ``flushevery`` -> ``flush_every``).

    Example:
        >>> from transformers import TrainerCallback
        >>> cb = GradDoctorCallback(flush_every=20)
        >>> isinstance(cb, TrainerCallback)  # then: Trainer(..., callbacks=[cb]).train(); cb.report()
        True
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, autofix: bool | list[str] = False,
                 **watch_options: Any) -> None:
        if autofix is not False:
            check_allowed(autofix)
        check_options("GradDoctorCallback (transformers)", watch_options, autofix)
        self.log_dir, self.watch_options, self.autofix = log_dir, watch_options, autofix
        self.watcher: HookedWatcher | None = None
        self.max_grad_norm = 0.0
        self._inner: Any = None
        self._sync: Any = None  # Accelerate's GradientState
        self._hook: Any = None
        self._queued = self._read = False
        self._report: Report | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       optimizer: Any = None, **kwargs: Any) -> None:
        if model is None:
            return
        for cb in [cb for cb in _OPEN if cb is self or (cb.watcher is not None and cb.watcher.root is model)]:
            cb._close()  # a train() that raised: its buffered steps are written, its hooks removed
        self.max_grad_norm = float(args.max_grad_norm or 0.0)
        extra = {"max_grad_norm": self.max_grad_norm} if self.max_grad_norm > 0 else {}
        every_step = args.logging_steps == 1 and _strategy(args) == "steps"
        off = (f"{args.world_size} processes: each rank would repair on its own records" if args.world_size > 1
               else "it judges every step's loss: set TrainingArguments(logging_steps=1)" if not every_step
               else None)
        if not every_step and self.autofix is False and state.is_world_process_zero:
            every = (f"every {args.logging_steps} steps (logging_steps)" if _strategy(args) == "steps"
                     else f"with logging_strategy={_strategy(args)!r}")
            warnings.warn(f"graddoctor: the Trainer logs the loss {every}, so watch records the loss only "
                          "then and the rules that read it (plateau, stuck loss, post-LN, init) see few values "
                          "- set TrainingArguments(logging_steps=1) to record every step's loss", stacklevel=2)
        self.watcher = framework_watcher(model, optimizer, self.log_dir, autofix=self.autofix, off=off,
                                         extra_config=extra, **self.watch_options).attach()
        self.watcher.start_at(state.global_step)  # a resumed run: the checkpoint's step
        self._inner, self._sync = self.watcher.optimizer, getattr(optimizer, "gradient_state", None)
        if self._sync is not None:  # every trainable parameter: the first may get no gradient
            self._hook = [p.register_post_accumulate_grad_hook(self._on_grad)  # (an unused head)
                          for p in model.parameters() if p.requires_grad]
        self._report = None
        _OPEN.add(self)

    def _on_grad(self, param: torch.Tensor) -> None:
        if not self._queued and not self._read and self._sync.sync_gradients:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)

    def _backward_done(self) -> None:
        self._queued = False
        if self.watcher is not None and not self._read:
            self._read = True
            self.watcher.before_optimizer_step(self._inner)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.watcher is not None and not self._read:  # fallback: after clipping
            self.watcher.before_optimizer_step(self._inner)
        self._read = False

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if self.watcher is not None and self.watcher.attached and isinstance(loss, (int, float)):
            self.watcher.step(float(loss))

    def _close(self) -> bool:
        """Remove the hooks and detach the watcher (its steps written); False if it was not attached."""
        _OPEN.discard(self)
        self._queued = self._read = False  # a backward that raised never ran its queued read
        for h in self._hook or []:
            h.remove()
        self._hook = None
        if self.watcher is None or not self.watcher.attached:
            return False
        self.watcher.detach()
        return True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not self._close() or not state.is_world_process_zero:
            return
        try:
            self._report = self.watcher.report()
        except Exception as e:  # noqa: BLE001 - never break the user's training
            warnings.warn(f"graddoctor: the report failed ({type(e).__name__}: {e})", stacklevel=2)
            return
        for f in self._report.findings:
            if f.severity != "info":  # info is no fault: in the report, not a warning
                warnings.warn(f"graddoctor: {f.severity}: {f.code}: {f.message}", stacklevel=2)

    def report(self) -> Report:
        """The findings on the run so far (the training-time rules over the records).

        Raises:
            InputError: before training started.
        """
        if self._report is not None:
            return self._report
        return self._require().report()

    def records(self) -> tuple[dict, list[dict]]:
        """``(meta, steps)`` as ``Watcher.records()``; with clipping each step also has ``clip``.

        Raises:
            InputError: before training started.
        """
        meta, steps = self._require().records()
        if self.max_grad_norm > 0:
            for rec in steps:
                rec["clip"] = clip_record(rec, self.max_grad_norm)
        return meta, steps

    def _require(self) -> HookedWatcher:
        if self.watcher is None:
            raise InputError("GradDoctorCallback has no run yet - pass it to Trainer(callbacks=[...]) and call train()")
        return self.watcher


def clip_record(rec: dict, max_norm: float) -> dict | None:
    """The clip ``torch.nn.utils.clip_grad_norm_`` applied at a step, from its pre-clip norms.

    Args:
        rec: a step record (``grad_norm`` per layer).
        max_norm: the clip threshold.

    Returns:
        ``{"max_norm", "norm", "coef"}`` (``coef = min(1, max_norm / (norm + 1e-6))``), or None
        for a step without gradient norms.

    Example:
        >>> clip_record({"grad_norm": {"a": 3.0, "b": 4.0}}, 1.0)["coef"]
        0.19999996
    """
    norms = [v for v in (rec.get("grad_norm") or {}).values() if v is not None]
    if not norms:
        return None
    total = math.sqrt(sum(v * v for v in norms))
    return {"max_norm": max_norm, "norm": total, "coef": round(min(1.0, max_norm / (total + 1e-6)), 8)}


__all__ = ["GradDoctorCallback", "clip_record"]
