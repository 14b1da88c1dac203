"""The watcher's lifecycle and hooks: class ``Monitor`` (the machinery of ``gd.watch``).

How it records, and why it is cheap: ``graddoctor.measure.monitor``. The parts: the layers
(``layers``), the ring buffer with named columns (``ring``), the step records (``records``),
the sampling schedule (``schedule``), the sampled forwards (``forwards``: the activation
sampler of ``activations`` and the opt-in ``output_grads``) and the sinks (``output``).
"""

from __future__ import annotations

import numbers
import os
import uuid
import warnings
from typing import Any

import torch
from torch import nn

from graddoctor.errors import GraddoctorError, InputError
from graddoctor.measure import distributed as dist_
from graddoctor.measure.monitor.admission import admit, check_one_device
from graddoctor.measure.monitor.forwards import SampledForwards
from graddoctor.measure.monitor.hooksafe import in_exception
from graddoctor.measure.monitor.layers import WatchedLayers, map_model
from graddoctor.measure.monitor.optimizers import held_params, hookable_optimizer, warn_foreign
from graddoctor.measure.monitor.output import RunOutput, checked_log_dir
from graddoctor.measure.monitor.pairing import (
    IDLE_WSTEPS,
    ClosureStep,
    FreshGrads,
    LossSlot,
    StepCount,
)
from graddoctor.measure.monitor.records import StepRecords, meta_record
from graddoctor.measure.monitor.ring import Row
from graddoctor.measure.monitor.schedule import (
    ACTIVATION_EVERY,
    DEAD_WINDOW,
    FLUSH_EVERY,
    UPDATE_EVERY,
    WEIGHT_EVERY,
    Schedule,
)
from graddoctor.measure.monitor.steps import StepGate, StepWriter

_WHO = "graddoctor.watch"


def _eager(hook: Any) -> Any:
    """An optimizer hook that a compiled ``opt.step`` runs eagerly, at a graph break: traced, its
    Python state made Dynamo recompile (5 graphs in 50 Adam steps, 2.9x slower)."""
    return torch.compiler.disable(hook)


class Monitor:
    """Records per-layer gradient statistics during training (the machinery of ``gd.watch``).

    Args:
        model: the model being trained (DDP / FSDP / ``torch.compile`` wrappers accepted).
        optimizer: its optimizer; gradients are read in its step pre-hook (with a closure, when
            the closure's first evaluation returns). None: ``w.step()`` marks the steps.
        log_dir: directory of ``watch.jsonl`` (and of TensorBoard events); None: records in memory only.
        example_inputs: inputs for ``ModelMap`` (else taken from the first forward).
        flush_every, update_every, weight_every, activation_every, dead_window: the sampling
            periods (``schedule.Schedule``; ``activation_every=0``: no activation statistics).
        output_grads: also record ``||dL/d output||`` per layer on activation-sampled steps.
        scaler: the ``torch.amp.GradScaler`` in use, to record skipped steps.
        sinks, fsync: sink names ("jsonl", "tensorboard", "wandb") or ``Sink`` objects (or one
            alone); ``os.fsync`` the JSONL file at each flush.
        history: step records kept in memory (oldest dropped; default: none with a JSONL sink,
            whose file ``records()`` reads back, else 100000).

    Raises:
        InputError: not a module or not an optimizer, a bad period, an unknown sink, parameters
            on several devices, lazy (not yet materialised) or meta-device parameters.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> w = Monitor(net).attach()
        >>> net(torch.ones(1, 2)).sum().backward(); w.step()
        >>> w.detach(); round(w.records()[1][0]["grad_norm"][""], 4)
        1.7321
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                 log_dir: str | os.PathLike | None = None, *, example_inputs: Any = None,
                 flush_every: int = FLUSH_EVERY, update_every: int = UPDATE_EVERY,
                 weight_every: int = WEIGHT_EVERY, activation_every: int = ACTIVATION_EVERY,
                 dead_window: int = DEAD_WINDOW, output_grads: bool = False, scaler: Any = None,
                 sinks: tuple | list = ("jsonl",), fsync: bool = False, history: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"watch() needs an nn.Module, got {type(model).__name__}")
        optimizer = hookable_optimizer(optimizer)  # Accelerate / Lightning wrappers: hook the inner one
        self.schedule = Schedule(flush_every, update_every, weight_every, activation_every, dead_window)
        self.model, self.root = model, dist_.unwrap(model)
        warn_foreign(optimizer, model, self.root)
        self.schedule, output_grads = admit(model, self.root, self.schedule, output_grads)
        self.optimizer, self.output_grads, self.scaler = optimizer, output_grads, scaler
        self.log_dir, self.example_inputs = checked_log_dir(log_dir), example_inputs
        self.run_id, self.mode = uuid.uuid4().hex[:12], dist_.mode(model)
        self.rank, self.world_size = dist_.world()
        self.output = RunOutput(self.log_dir, sinks, fsync, history, self.run_id, write=self.rank == 0)
        self.forwards = SampledForwards(self.root, self.schedule, self._setup, self._guarded, self.rank == 0, model)
        self._meta: dict | None = None  # set up with the map: example_inputs, first forward or step
        # other optimizers step what this one leaves out (a framework's GAN): those layers are judged
        self.other_optimizers, self._handles, self._step = False, list[Any](), 0  # _handles: optimizer hooks
        self.losses, self._count, self._closure = LossSlot(), StepCount(scaler), ClosureStep()
        self._gate, self._used = StepGate(), FreshGrads()  # once per step (torch may run hooks twice); pairing
        self.attached, self.failed, self.fixes = False, None, []  # failed: why recording stopped; fixes: autofix's

    def attach(self) -> Monitor:
        """Install the hooks (idempotent). Returns self."""
        if self.attached:
            return self
        try:
            self.attached = True
            self._guarded(self._open_output, raises=GraddoctorError)  # bad inputs raise
            if self._meta is None or self.forwards.wants(self._step + 1):
                self.forwards.arm()
            if self.optimizer is not None:
                self._handles += [self.optimizer.register_step_pre_hook(_eager(self._safe_pre_step)),
                                  self.optimizer.register_step_post_hook(_eager(self._safe_post_step))]
        except BaseException:
            self.detach()
            raise
        return self

    def _open_output(self) -> None:
        """The sinks and the meta line (a failing sink warns, through ``_guarded``)."""
        self.output.open()
        if self._meta is None and self.example_inputs is not None:
            self._setup(self.example_inputs)
        elif self._meta is not None:
            self.output.write_meta(self._meta)

    def detach(self) -> None:
        """Remove every hook, flush the ring and close the sinks (idempotent)."""
        if not self.attached:
            return
        self.attached = False
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.forwards.close()
        if self._meta is not None:
            self.steps.snapshot = None
        try:
            if self.world_size == 1 or not in_exception():  # a raising rank: its peers wait in DDP's collective
                self._guarded(self.flush, always=True)
        finally:  # a failing close (disk full) warns like any internal error
            self._guarded(self.output.close, always=True)

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    def _setup(self, inputs: Any) -> None:
        """Layers (ModelMap order, or named_modules order as fallback), ring buffer, meta line."""
        mm = None if inputs is None else map_model(self.root, inputs, warn=self.rank == 0)
        self.layers = layers = WatchedLayers(self.root, mm, self.mode == "sharded", held_params(self.optimizer, self.root))
        self.device, self._host_check = layers.device, layers.device.type == "cpu"  # a host read: free on CPU
        self.steps = StepWriter(layers, self.schedule, self.optimizer, self.root)
        self.ring = self.steps.ring
        self._records = StepRecords(layers, [s.name for s in ([] if mm is None else mm.activations)])
        self._meta = meta_record(self.run_id, layers, mm, {
            **vars(self.schedule), "output_grads": self.output_grads,
            "optimizer": type(self.optimizer).__name__ if self.optimizer is not None else None,
            "distributed": self.mode, "world_size": self.world_size, "mapped": mm is not None, "several_optimizers": self.other_optimizers,
            "nonfinite_unit": "values" if self._host_check else "tensors", **self._setup_audit(mm, inputs)},
            set() if self.other_optimizers else layers.left_out_layers())  # not stepped: not judged
        self.forwards.set_up(self.root, mm, layers, self.schedule.dead_window, self.output_grads)
        if self.optimizer is None:
            self.steps.snapshot_for(1)
        self.output.write_meta(self._meta)

    def _setup_audit(self, mm: Any, inputs: Any) -> dict[str, Any]:  # meta config extras: the Watcher's audit
        return {}

    def _new_row(self) -> Row:
        if unmapped := self._meta is None:
            self._setup(None)
        self.losses.settle()  # the last row's loss is known before it may leave the ring
        if len(self.ring.rows) == self.schedule.flush_every:
            self.flush()
        self._step += 1
        if self.forwards.begin_step(self._step + 1, unmapped) and self.attached:
            self.forwards.arm()
        row = self.ring.append(self._step)
        self.losses.new_row(row)
        return row

    def _record(self, scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None) -> None:
        row = self._new_row()  # (sets up first, when the step comes before any forward)
        self.steps.write(row, self._host_check, scale, found_inf)

    def _guarded(self, fn: Any, *args: Any, always: bool = False, raises: Any = ()) -> Any:
        """Run ``fn`` unless recording stopped (``always``: even then); an internal error (not one of
        ``raises``) warns once and stops the recording, never breaking the user's training loop."""
        if self.failed is not None and not always:
            return None
        step0 = self._step
        try:
            return fn(*args)
        except raises:
            raise
        except Exception as e:  # noqa: BLE001 - never break the training loop
            if self.failed is None:
                self.failed = f"{type(e).__name__}: {e}"
                if self._meta is not None:  # drop a half-written row
                    self.ring.rows = [r for r in self.ring.rows if r.step <= step0]
                    self.steps.snapshot = None
                self.losses = LossSlot()
                warnings.warn(f"{_WHO}: internal error ({self.failed}); recording stopped at step "
                              f"{self._step}, training continues", stacklevel=3)
            return None

    def _safe_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> Any:
        if self._gate.enter(optimizer) or self._closure.new_step(args, kwargs):  # (closure: see pairing)
            wrapped = self._guarded(self._closure.wrap, args, kwargs, lambda: self._guarded(self._pre_step, optimizer))
            return wrapped if wrapped is not None else self._guarded(self._pre_step, optimizer)
        return None

    def _safe_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._gate.exit():  # (a closure that never ran: the step is recorded now, without its update)
            self._guarded(self.steps.write_update, self._closure.take())
            self._guarded(self._used.mark, optimizer)  # the gradients it used: a loss given now is its own

    def _pre_step(self, optimizer: torch.optim.Optimizer) -> None:
        self._count.stepped()
        scale, found = getattr(optimizer, "grad_scale", None), getattr(optimizer, "found_inf", None)
        self._record(*(v if isinstance(v, torch.Tensor) else None for v in (scale, found)))
        self.steps.snapshot_for(self._step)

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Record the loss of the current step; without an optimizer, also mark the step.

        With an optimizer, call it after (or before) ``opt.step()``, once per step or per
        micro-batch: a step's loss is the mean of the losses given since the previous step and,
        in a loop calling it after ``opt.step()``, of the one given right after it (the rule:
        ``pairing``). With ``scaler=``, a ``scaler.update()`` and no optimizer step since the
        previous call is a skipped step. Without an optimizer, call it after ``backward()`` and
        before ``zero_grad()``. Example: ``w.step(loss)`` after ``if (i + 1) % 4 == 0:
        opt.step()`` records for each step the mean of its 4 micro-batches' losses.

        Args:
            loss: the step's loss (a real scalar tensor or a number), or None.

        Raises:
            InputError: a detached watcher, or a loss that is not a real scalar.
        """
        if not self.attached:
            raise InputError("w.step() on a detached watcher - use it inside `with gd.watch(...)` "
                             "or call w.attach() first")
        self._guarded(self._step_impl, None if loss is None else _loss_tensor(loss))

    def _step_impl(self, lt: torch.Tensor | None) -> None:
        if self._meta is None and self.optimizer is None:
            self._setup(None)
        if lt is not None and self._meta is not None and lt.device != self.device:
            lt = lt.to(self.device)
        if self.optimizer is None:
            self._record()
            self.steps.marked(self._step)  # (its update; warns when the first calls see no gradient)
        elif self._count.wstep(self.optimizer) and self._meta is not None:
            row = self._new_row()  # the scaler skipped optimizer.step(): no gradients were used
            row.skipped, row.grads = True, False
            self._used.mark(self.optimizer)
        if lt is not None:  # (a backward since the last step: the loss is the next step's)
            self.losses.add(lt, self.optimizer is not None and self._used.fresh())

    def flush(self, keep_pending: bool = False) -> None:
        """Move the buffered rows to the host (one transfer; distributed: one all_reduce) and
        write them to the sinks. Distributed: every rank must call it at the same point.

        Args:
            keep_pending: keep back the last row while its loss may still come (``records()``
                called between ``opt.step()`` and ``w.step(loss)``).
        """
        rows = self.ring.rows if self._meta is not None else []
        n = len(rows) - (1 if keep_pending and rows and self.losses.row is rows[-1] else 0)
        if n <= 0:
            return
        self.losses.flushed(rows[n - 1].step)  # (a loss held for the last row goes to it)
        block = self.ring.flush_block(n, count_nonfinite=not self._host_check, mode=self.mode)
        records = self._records.build(rows[:n], block, *self.forwards.take([row.step for row in rows[:n]]))
        self.ring.drop(n)
        if self.rank == 0:
            self.output.write_steps(records)

    def records(self) -> tuple[dict, list[dict]]:
        """The run so far, as in the run log (flushes first; distributed: flushed rows only).

        Returns:
            ``(meta, steps)``: the meta record and the step records.
        """
        if self.mode == "single":
            self._guarded(self.flush, self.attached, always=True)
        return self.output.read(self._meta)

    def __repr__(self) -> str:
        return f"Watcher({type(self.root).__name__}, {'attached' if self.attached else 'detached'}, step={self._step})"


def _loss_tensor(loss: Any) -> torch.Tensor:
    """``loss`` as a detached float32 0-d tensor; one-line InputError unless a real scalar."""
    if isinstance(loss, torch.Tensor):
        if loss.dtype is torch.float32 and loss.dim() == 0:  # the common case, fast
            return loss.detach()
        if loss.numel() != 1 or loss.is_complex():
            raise InputError(f"w.step(loss): loss must be a real scalar, got a {loss.dtype} tensor "
                             f"of shape {list(loss.shape)} - pass loss.mean() (or nothing)")
        return loss.detach().float().reshape(())
    if isinstance(loss, numbers.Real):
        return torch.tensor(float(loss))
    kind = getattr(getattr(loss, "dtype", None), "kind", None)
    if hasattr(loss, "__array__") and getattr(loss, "size", None) == 1 and kind in ("f", "i", "u", "b"):  # NumPy
        try:
            return torch.tensor(float(loss.__array__().reshape(())))
        except (TypeError, ValueError, RuntimeError):
            pass
    raise InputError(f"w.step(loss): loss must be a scalar tensor or a number, got {type(loss).__name__}")


__all__ = ["ACTIVATION_EVERY", "FLUSH_EVERY", "IDLE_WSTEPS", "UPDATE_EVERY", "Monitor", "check_one_device"]
