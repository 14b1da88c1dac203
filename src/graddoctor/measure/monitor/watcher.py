"""watch: the during-training gradient-flow monitor.

``gd.watch(model, optimizer, log_dir)`` records, for every layer (parameter-owning
module, in execution order from ``ModelMap``) and every optimizer step: the
gradient L2 norm, the count of NaN/Inf gradient values, the weight norm, the
loss given to ``w.step(loss)``; on sampled steps the update norm
``||w_t - w_{t-1}||`` and update/weight ratio and activation statistics.
The run-log format is described in ``graddoctor.runlog``.

How (and why it is cheap):

- Gradients are read in the optimizer's step *pre-hook*
  (``optimizer.register_step_pre_hook``), where they are final: accumulated over
  micro-batches, unscaled by a ``GradScaler`` (``scaler.step`` unscales before it
  calls ``optimizer.step``), all-reduced by DDP. No module backward hooks.
  Without an optimizer, ``w.step()`` marks the step (call it before ``zero_grad``).
- Per step, the norm of every gradient tensor goes into one row of a preallocated
  ring buffer ``[flush_every, tensors]`` on the parameters' device: one fused
  ``torch._foreach_norm`` + one ``stack``, and one ``stack`` + ``vector_norm``
  per group of small same-shape tensors such as biases (``stats.TensorNorms``).
  Everything else (per-layer sums of squares in float64, presence, loss, sampled
  weight/update norms) is kept as tensors and assembled once per flush. No host
  read of a device value in the step path (tested: hooks, ``w.step``, sampled
  forwards). NaN/Inf: on CPU, where a host read is free, one bool per step decides
  whether to count the NaN/Inf values (only when a norm is non-finite); on other
  devices ``nonfinite`` counts the gradient *tensors* whose fused norm is NaN/Inf
  (free: an exact value count needs a pass per tensor per step, or a host sync);
  ``meta.config.nonfinite_unit`` says which ("values" or "tensors"). One host
  transfer (and, distributed, one ``all_reduce``) every ``flush_every`` steps, and
  at detach. Memory: the ring
  (O(layers x flush_every)), one weight copy during update-sampled steps, one
  integer per ReLU unit for the dead-unit window; step records kept on the host
  only without a JSONL sink (``history``).
- Weight norms cost a second full pass, so they are measured every
  ``weight_every`` steps (see below) and on update-sampled steps and
  written on those steps only; ``records()`` and ``runlog.read_run`` carry the
  last measured value to the steps in between, with ``weight_step`` saying which
  step it was measured at (``weight_every=1``: measured every step).
- Update norms, exact but sampled: on the sampled steps of ``update_every``
  the pre-hook snapshots the trainable weights, the step post-hook computes
  ``||w_after - w_before||`` per layer (in place, in the snapshot) and frees the
  snapshot (at most one copy of the weights alive, only during that step).
  Without an optimizer the snapshot is taken at the previous ``w.step()`` and the
  update measured at this one.
- Sampled statistics (weight, update and activation, each with its period k) are
  measured on steps 1, 1+k, 1+2k, ... and, within the first k steps, also on steps
  2, 4, 8, ...: dense at the start of a run, where init problems show first.
- Activation statistics every ``activation_every`` steps, on the first forward
  (with grad enabled) of the sampled step: see ``graddoctor.measure.monitor.activations``. The
  root's forward hooks are installed for that forward only (and for the first
  forward, which maps the model): unsampled forwards run with no hook at all.
- Do no harm: an internal error in a hook or in ``w.step`` warns once (naming
  graddoctor) and stops the recording (``w.failed`` says why); the steps recorded
  before it are kept, training goes on. Bad arguments (``w.step(loss)`` with a
  non-scalar loss) still raise a one-line ``InputError``. ``w.step()`` called 100
  times without a step of the given optimizer warns once (wrong optimizer?); the
  losses meanwhile are kept as one running sum (bounded memory).
- AMP: with ``scaler=`` given, an iteration where ``scaler.step`` skipped the
  optimizer (inf/nan gradients) is recorded at ``w.step()`` as ``skipped: true``
  without gradient norms (call ``w.step`` once per iteration, after
  ``scaler.step``). Optimizers that take the scale themselves (fused Adam:
  ``optimizer.grad_scale``/``found_inf``) are unscaled in the pre-hook and
  flagged from ``found_inf``.
- Layers: ``ModelMap(model, example_inputs).param_groups(model)``. Without
  ``example_inputs`` the map is built on the first forward, from that forward's
  inputs (a forward pre-hook that runs ``ModelMap`` once, before the model's own
  forward, under ``no_grad``; ``ModelMap`` restores RNG state and buffers). If a
  forward mixes positional and keyword tensors, or the map fails, or the first
  step comes before any forward, layers fall back to ``named_modules`` order
  (no activation sites are known then).
- ``torch.compile``: watch the compiled module (``gd.watch(torch.compile(m), opt)``):
  layer names are the original ones, gradient statistics are exact, activation
  statistics are turned off with a warning (module hooks added between compiled
  calls are not seen by the compiled graph). Watching the plain module while
  calling a compiled one records gradients correctly but activation samples may
  be missing.
- Distributed (see ``graddoctor.measure.distributed``): DDP, FSDP1 (``use_orig_params=True``
  for per-layer names) and FSDP2; every rank attaches, rank 0 writes the sinks;
  the loss is the mean over ranks; activation statistics are rank 0's batch.
  ``records()`` then returns the flushed rows only: call it after the ``with``.
- The loss: call ``w.step(loss)`` once per optimizer step, after ``opt.step()``
  (before it also works); several calls between two steps are averaged.
- Opt-in ``output_grads=True``: on activation-sampled steps, a tensor hook on each
  layer's output records ``||dL/d output||`` (``out_grad_norm``). Pitfalls: it sees
  the sampled micro-batch only (before accumulation, and scaled by a GradScaler),
  fires only if the output takes part in the backward, cannot see outputs
  modified in place afterwards, and keeps the output's autograd node alive until
  backward (as autograd does anyway).

Defaults (``benchmarks/overhead.py``, ``benchmarks/README.md``): ``flush_every=50``,
``weight_every=200``, ``update_every=200``, ``activation_every=100``, ``dead_window=10``.

Example:
    >>> import torch, graddoctor as gd
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> with gd.watch(net, opt) as w:
    ...     for _ in range(3):
    ...         loss = net(torch.randn(16, 4)).pow(2).mean()
    ...         loss.backward(); opt.step(); opt.zero_grad(); w.step(loss)
    >>> meta, steps = w.records()
    >>> [l["name"] for l in meta["layers"]], len(steps), sorted(steps[0]["grad_norm"])
    (['0', '2'], 3, ['0', '2'])
"""

from __future__ import annotations

import itertools
import math
import numbers
import operator
import os
import uuid
import warnings
from collections import deque
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.measure import distributed as dist_
from graddoctor.measure.monitor.activations import STAT_NAMES, ActivationSampler
from graddoctor.measure.stats import (
    TensorNorms,
    layer_sq_norms,
    nonfinite_counts,
    round_significant,
    segment_index,
    tensor_norms,
    update_sq_norms,
)
from graddoctor.modelmap import ModelMap, layer_kind
from graddoctor.runlog import VERSION, carry_weights, read_run

#: default sampling periods (activation_every chosen by benchmarks/overhead.py)
FLUSH_EVERY = 50
UPDATE_EVERY = 200
WEIGHT_EVERY = 200  # = UPDATE_EVERY: weights measured with the updates (the ratio needs them)
ACTIVATION_EVERY = 100
DEAD_WINDOW = 10
#: w.step() calls in a row without an optimizer step before watch warns (gradient accumulation
#: calls w.step() once per optimizer step, so this many means the wrong optimizer was given)
IDLE_WSTEPS = 100
_NONE = itertools.repeat(None)  # ``any(map(operator.is_, grads, _NONE))``: is a gradient missing?


class Monitor:
    """Records per-layer gradient statistics during training (the machinery of ``gd.watch``).

    Args:
        model: the model being trained (DDP / FSDP / ``torch.compile`` wrappers accepted).
        optimizer: its optimizer; gradients are read in its step pre-hook. None: ``w.step()``
            marks the steps.
        log_dir: directory for ``watch.jsonl`` (and TensorBoard events with
            ``sinks=("jsonl", "tensorboard")``); None: records kept in memory only.
        example_inputs: inputs for ``ModelMap`` (else taken from the first forward).
        flush_every: steps between host transfers (the ring buffer size).
        update_every: period of the update-norm measurements (one weight copy during that step).
        weight_every: period of the weight-norm measurements.
        activation_every: period of the activation statistics (0: never).
        dead_window: sampled batches over which a ReLU unit must stay inactive to be dead.
        output_grads: also record ``||dL/d output||`` per layer on activation-sampled steps.
        scaler: the ``torch.amp.GradScaler`` in use, to record skipped steps.
        sinks: sink names ("jsonl", "tensorboard") or ``Sink`` objects; used with ``log_dir``.
        fsync: ``os.fsync`` the JSONL file at each flush.
        history: step records kept in memory (oldest dropped). Default: none when a JSONL
            sink is used (``records()`` reads the run back from the file), else 100000.

    Example:
        >>> import torch
        >>> net = torch.nn.Linear(2, 1)
        >>> w = Monitor(net).attach()
        >>> net(torch.ones(1, 2)).sum().backward(); w.step()
        >>> w.detach(); round(w.records()[1][0]["grad_norm"][""], 4)
        1.7321
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        log_dir: str | os.PathLike | None = None,
        *,
        example_inputs: Any = None,
        flush_every: int = FLUSH_EVERY,
        update_every: int = UPDATE_EVERY,
        weight_every: int = WEIGHT_EVERY,
        activation_every: int = ACTIVATION_EVERY,
        dead_window: int = DEAD_WINDOW,
        output_grads: bool = False,
        scaler: Any = None,
        sinks: tuple | list = ("jsonl",),
        fsync: bool = False,
        history: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"watch() needs an nn.Module, got {type(model).__name__}")
        if optimizer is not None and not hasattr(optimizer, "register_step_pre_hook"):
            raise InputError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        for name, v in (("flush_every", flush_every), ("update_every", update_every),
                        ("weight_every", weight_every),
                        ("dead_window", dead_window)):
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive int, got {v!r}")
        if not isinstance(activation_every, int) or activation_every < 0:
            raise InputError(f"activation_every must be an int >= 0 (0 = off), got {activation_every!r}")
        self.model = model
        self.root = dist_.unwrap(model)
        check_one_device(self.root)
        if (activation_every or output_grads) and _is_compiled(model):
            warnings.warn("graddoctor.measure.monitor.watcher: activation statistics are off for a torch.compile'd "
                          "model (module hooks added between compiled calls do not fire)", stacklevel=3)
            activation_every, output_grads = 0, False
        self.optimizer = optimizer
        self.log_dir = None if log_dir is None else str(log_dir)
        self.example_inputs = example_inputs
        self.flush_every, self.update_every = flush_every, update_every
        self.weight_every = weight_every
        self.activation_every, self.dead_window = activation_every, dead_window
        self.output_grads, self.scaler = output_grads, scaler
        self.run_id = uuid.uuid4().hex[:12]
        self.rank, self.world_size = dist_.world()
        self.mode = dist_.mode(model)
        self._sink_specs = list(sinks)
        self._fsync = fsync
        self.sinks: list[Any] = []
        self._history_len = history
        self._meta: dict | None = None
        self._history: deque | None = None
        self._handles: list[Any] = []
        self._fwd_handles: list[Any] = []  # root forward hooks: only while a forward is awaited
        self.attached = False
        self._mapping = False
        self._step = 0  # steps recorded (the next one gets _step + 1)
        self._opt_steps = 0
        self._opt_steps_at_wstep = 0
        self._rows: list[dict] = []  # host info of the rows in the ring
        self._ring: torch.Tensor | None = None
        self._snapshot: list[torch.Tensor] | None = None
        self._loss_row: int | None = None  # ring row waiting for its loss
        self._pending_loss: tuple[torch.Tensor, int] | None = None  # (sum, count): O(1) memory
        self._idle_wsteps = 0  # w.step() calls in a row without an optimizer step
        self._sampler: ActivationSampler | None = None
        self._act_for_step = 0
        self._act_pending: dict[int, torch.Tensor] = {}
        self._og_handles: list[Any] = []
        self._og_buf: dict[int, torch.Tensor] = {}
        self._last_weight: tuple[int, dict] | None = None
        self._patterns: dict[tuple, tuple] = {}  # gradient presence -> (ring columns, layer counts)
        self.failed: str | None = None  # set when an internal error stopped the recording

    # ------------------------------------------------------------ attach / detach

    def attach(self) -> Monitor:
        """Install the hooks (idempotent). Returns self."""
        if self.attached:
            return self
        try:
            self.attached = True
            if self.log_dir is not None and self.rank == 0 and not self.sinks:
                self.sinks = [_make_sink(s, self.log_dir, self._fsync) for s in self._sink_specs]
            if self._history is None:
                n = self._history_len
                if n is None:
                    n = 0 if self._jsonl() is not None else 100_000
                self._history = deque(maxlen=n)
            if self._meta is None and self.example_inputs is not None:
                self._setup(self.example_inputs)
            elif self._meta is not None:
                self._emit_meta()
            if self._meta is None or self._wants_forward(self._step + 1):
                self._arm()
            if self.optimizer is not None:
                self._handles.append(self.optimizer.register_step_pre_hook(self._safe_pre_step))
                self._handles.append(self.optimizer.register_step_post_hook(self._safe_post_step))
        except BaseException:
            self.detach()
            raise
        return self

    def detach(self) -> None:
        """Remove every hook, flush the ring and close the sinks (idempotent)."""
        if not self.attached:
            return
        self.attached = False
        for h in self._handles + self._og_handles:
            h.remove()
        self._handles.clear()
        self._og_handles.clear()
        self._disarm()
        if self._sampler is not None:
            self._sampler.close()
        self._snapshot = None
        try:
            self._guarded(self.flush, always=True)
        finally:
            for s in self.sinks:
                s.close()

    def __enter__(self) -> Monitor:
        return self.attach()

    def __exit__(self, *exc: Any) -> None:
        self.detach()

    # ------------------------------------------------------------ setup

    def _setup(self, inputs: Any) -> None:
        """Layers (ModelMap order, or named_modules order as fallback), ring buffer, meta line."""
        mm = None
        if inputs is not None:
            self._mapping = True
            try:
                mm = ModelMap(self.root, inputs)
            except Exception as e:  # noqa: BLE001 - fall back to definition order
                warnings.warn(f"graddoctor.measure.monitor.watcher: ModelMap failed ({e}); layers in named_modules order",
                              stacklevel=3)
            finally:
                self._mapping = False
        if mm is not None:
            groups = mm.param_groups(self.root)
        else:
            groups, seen = [], set()
            for n, m in self.root.named_modules():
                ps = [p for p in m.parameters(recurse=False) if id(p) not in seen]
                seen.update(id(p) for p in ps)
                if ps:
                    groups.append((n, ps))
        mods = dict(self.root.named_modules())
        self.layer_names = [dist_.clean_name(n) for n, _ in groups]
        self._params = [p for _, ps in groups for p in ps]
        self._trainable = [p.requires_grad for p in self._params]
        self.n_layers = L = len(groups)
        dev = self._params[0].device if self._params else torch.device("cpu")
        self.device = dev
        self._host_check = dev.type == "cpu"  # a host read is free on CPU, a sync elsewhere
        # norms accumulated in float64 only for float64 parameters (decided once, not every step)
        self._acc = torch.float64 if any(p.dtype == torch.float64 for p in self._params) else torch.float32
        self._index = segment_index([len(ps) for _, ps in groups], dev)
        tr = [i for i, t in enumerate(self._trainable) if t]
        self._train_params = [self._params[i] for i in tr]
        self._train_index = self._index[torch.tensor(tr, dtype=torch.long, device=dev)] if tr else self._index[:0]
        self._train_layers = sorted({int(i) for i in self._train_index.tolist()})
        # per-step gradient norms, one per tensor (the only per-step write); the per-layer block
        # is assembled at flush, in float64 where available: squared norms up to 1e308
        self._rdt = torch.float32 if dev.type == "mps" else torch.float64
        self._ring = torch.zeros(self.flush_every, len(self._params), device=dev, dtype=self._acc)
        # ring columns in TensorNorms order (fused norms first, then stacked groups)
        self._norms = TensorNorms(self._local_params(self._params), self._acc)
        self._ring_params = [self._params[i] for i in self._norms.order]
        self._ring_views = [self._norms.views(row) for row in self._ring]  # built once, not per step
        self._col_index = self._index[torch.tensor(self._norms.order, dtype=torch.long, device=dev)]
        self._has_all = self._pattern((True,) * len(self._params))[1]  # every gradient present
        summed = torch.zeros(5 * L + 2, dtype=torch.bool)
        summed[: 5 * L] = True
        self._summed = summed
        layers = []
        for (n, ps), clean in zip(groups, self.layer_names):
            lay = mm._layer_by_name.get(n) if mm is not None else None
            m = mods.get(n)
            layers.append({
                "name": clean, "type": lay.type if lay else (type(m).__name__ if m is not None else ""),
                "kind": lay.kind if lay else (layer_kind(m) if m is not None else "other"),
                "depth": lay.depth if lay else None, "min_depth": lay.min_depth if lay else None,
                "activation": lay.activation if lay else None, "is_output": bool(lay and lay.is_output),
                "numel": sum(p.numel() for p in ps), "trainable": any(p.requires_grad for p in ps),
            })
        sites = [] if mm is None else mm.activations
        self._meta = {
            "type": "meta", "version": VERSION, "run_id": self.run_id, "layers": layers,
            "activations": [{"name": s.name, "kind": s.kind, "family": s.family, "owner": s.owner,
                             "functional": s.functional, "is_output": s.is_output} for s in sites],
            "config": {"flush_every": self.flush_every, "update_every": self.update_every,
                       "weight_every": self.weight_every,
                       "activation_every": self.activation_every, "dead_window": self.dead_window,
                       "output_grads": self.output_grads, "optimizer": type(self.optimizer).__name__
                       if self.optimizer is not None else None, "distributed": self.mode,
                       "world_size": self.world_size, "mapped": mm is not None,
                       "nonfinite_unit": "values" if self._host_check else "tensors"},
        }
        self.site_names = [s.name for s in sites]
        if sites and self.activation_every and self.rank == 0:
            conv = {lay.activation_site for lay in mm.layers if lay.kind == "conv" and lay.activation_site}
            self._sampler = ActivationSampler(
                self.root, [(s.name, s.kind, s.family, s.functional, s.owner) for s in sites],
                conv, self.dead_window)
        self._layer_modules = [mods.get(n) for n, _ in groups]
        if self.optimizer is None and self._due(1, self.update_every):
            self._snapshot = self._take_snapshot()
        self._emit_meta()

    def _emit_meta(self) -> None:
        for s in self.sinks:
            s.write_meta(self._meta)

    @staticmethod
    def _due(step: int, every: int) -> bool:
        """Sampled steps of a period k: 1, 1+k, 1+2k, ... and, within the first k steps, the
        powers of two (2, 4, 8, ...): dense at the start of a run, where init problems show
        first; the rate of every k steps afterwards.

        Example:
            >>> [s for s in range(1, 30) if Monitor._due(s, 10)]
            [1, 2, 4, 8, 11, 21]
        """
        return every > 0 and ((step - 1) % every == 0 or (step < every and step & (step - 1) == 0))

    # ------------------------------------------------------------ forward hooks

    def _wants_forward(self, step: int) -> bool:
        """Step ``step`` samples its first forward (activation statistics, output gradients)."""
        return ((self._sampler is not None or self.output_grads) and self.rank == 0
                and self._due(step, self.activation_every))

    def _arm(self) -> None:
        """Hook the root's forward (the first forward: the map; sampled steps: the sampler);
        unsampled forwards run with no hook at all."""
        if not self._fwd_handles:
            self._fwd_handles = [
                self.root.register_forward_pre_hook(self._safe_on_forward, with_kwargs=True,
                                                    prepend=True),
                self.root.register_forward_hook(self._safe_on_forward_end, always_call=True)]

    def _disarm(self) -> None:
        for h in self._fwd_handles:
            h.remove()
        self._fwd_handles = []

    @torch.compiler.disable
    def _safe_on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._guarded(self._on_forward, module, args, kwargs)

    @torch.compiler.disable
    def _safe_on_forward_end(self, module: nn.Module, args: tuple, out: Any) -> None:
        self._guarded(self._on_forward_end, module, args, out)

    def _on_forward(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if self._mapping:
            return
        if self._meta is None:
            inputs = (args if len(args) != 1 else args[0]) if not kwargs else (kwargs if not args else None)
            if inputs is None:
                warnings.warn("graddoctor.measure.monitor.watcher: the first forward mixes positional and keyword "
                              "inputs; layers in named_modules order - pass example_inputs= to "
                              "watch() for the execution order", stacklevel=2)
            self._setup(inputs)
        nxt = self._step + 1
        if (self._act_for_step != nxt and torch.is_grad_enabled() and self.rank == 0
                and self._due(nxt, self.activation_every)):
            self._act_for_step = nxt
            if self._sampler is not None:
                self._sampler.start()
            if self.output_grads:
                self._hook_outputs(nxt)

    def _on_forward_end(self, module: nn.Module, args: tuple, out: Any) -> None:
        if self._mapping:
            return
        for h in self._og_handles:
            h.remove()
        self._og_handles.clear()
        if self._sampler is not None and self._sampler.active:
            stats = self._sampler.stop()
            if stats is not None:
                self._act_pending[self._step + 1] = stats
        if self._meta is not None and (self._act_for_step == self._step + 1
                                       or not self._wants_forward(self._step + 1)):
            self._disarm()  # sampled (or nothing to sample): no hook until the next sampled step

    def _hook_outputs(self, step: int) -> None:
        buf = self._og_buf[step] = torch.zeros(self.n_layers, device=self.device, dtype=self._rdt)

        def layer_hook(i: int) -> Any:
            def fwd(module: nn.Module, args: Any, out: Any) -> None:
                t = out if isinstance(out, torch.Tensor) else None
                if t is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                    t = out[0]
                if t is not None and t.requires_grad:
                    t.register_hook(lambda g: buf.__setitem__(
                        i, buf[i] + torch.linalg.vector_norm(g.detach(), dtype=buf.dtype).square()))
            return fwd

        for i, m in enumerate(self._layer_modules):
            if m is not None:
                self._og_handles.append(m.register_forward_hook(layer_hook(i)))

    # ------------------------------------------------------------ the step path

    def _pattern(self, present: tuple[bool, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The ring columns whose gradient is present, and the per-layer count of present tensors."""
        hit = self._patterns.get(present)
        if hit is None:
            sel = torch.tensor([i for i, ok in enumerate(present) if ok], dtype=torch.long,
                               device=self.device)
            has = torch.zeros(self.n_layers, device=self.device, dtype=self._rdt)
            has.index_add_(0, self._col_index[sel], torch.ones(len(sel), device=self.device,
                                                                   dtype=self._rdt))
            if len(self._patterns) > 64:
                self._patterns.clear()
            hit = self._patterns[present] = (sel, has)
        return hit

    def _take_snapshot(self) -> list[torch.Tensor]:
        return [dist_.local(p).detach().clone() for p in self._train_params]

    def _local_params(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.mode == "sharded":
            return [dist_.local(p).detach() for p in params]
        return [p.detach() for p in params]

    def _new_row(self) -> int:
        if self._meta is None:
            self._setup(None)
        if len(self._rows) == self.flush_every:
            self.flush()
        r = len(self._rows)
        self._step += 1
        if self.attached and self._wants_forward(self._step + 1):
            self._arm()
        self._rows.append({"step": self._step, "loss": False, "weights": False, "update": False,
                           "skipped": False, "grads": True, "lr": None})
        if self._pending_loss is not None:
            self._set_loss(r, *self._pending_loss)
            self._pending_loss = None
            self._loss_row = None
        else:
            self._loss_row = r
        return r

    def _record(self, scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None) -> int:
        """Write this step's gradient norms into a new ring row (``stats.TensorNorms``).

        Everything else of the step (per-layer sums, squares, presence, loss, sampled weight
        norms) is kept as it is and assembled once per flush (``_block``)."""
        r = self._new_row()
        info, views = self._rows[r], self._ring_views[r]
        row = views[0]
        grads = [p.grad for p in self._ring_params]  # in ring column order
        if any(map(operator.is_, grads, _NONE)):  # frozen or unused parameters: rarer path
            present = tuple(g is not None for g in grads)
            sel, info["has"] = self._pattern(present)
            grads = [g for g in grads if g is not None]
            row.zero_()
            if grads:
                row.index_copy_(0, sel, tensor_norms(self._local_grads(grads), self._acc))
        else:
            self._norms.ordered(self._local_grads(grads), views)
        if scale is not None:  # fused optimizers unscale themselves: divide at flush
            info["scale"] = scale.detach().to(self._rdt)
        # CPU: exact count of NaN/Inf values, only when a norm says so (a host read is free there)
        if self._host_check and grads and not math.isfinite(row.sum().item()):
            idx = self._col_index if "has" not in info else self._col_index[sel]
            info["nonfinite"] = nonfinite_counts(self._local_grads(grads), idx, self.n_layers)
        if found_inf is not None:
            info["found_inf"] = found_inf.float().sum()
        if self._due(self._step, self.weight_every) or self._due(self._step, self.update_every):
            info["weights"] = True
            info["wsq"] = layer_sq_norms(
                self._local_params(self._params), self._index, self.n_layers,
                out=torch.zeros(self.n_layers, device=self.device, dtype=self._rdt), acc=self._acc)
        if self.optimizer is not None:
            lr = self.optimizer.param_groups[0].get("lr")
            info["lr"] = lr.detach().clone() if isinstance(lr, torch.Tensor) else lr
        return r

    def _local_grads(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        return [dist_.local(g) for g in grads] if self.mode == "sharded" else grads

    def _guarded(self, fn: Any, *args: Any, always: bool = False) -> Any:
        """Run ``fn`` unless recording stopped (``always``: even then, e.g. the final flush); an
        internal error warns once and stops the recording instead of raising into the user's
        ``opt.step()`` / forward / training loop."""
        if self.failed is not None and not always:
            return None
        step0 = self._step
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 - never break the training loop
            if self.failed is not None:
                return None
            self.failed = f"{type(e).__name__}: {e}"
            self._rows = [r for r in self._rows if r["step"] <= step0]  # drop a half-written row
            self._snapshot, self._pending_loss, self._loss_row = None, None, None
            warnings.warn(f"graddoctor.measure.monitor.watcher: internal error ({self.failed}); recording stopped "
                          f"at step {self._step}, training continues", stacklevel=3)
            return None

    def _safe_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._guarded(self._pre_step, optimizer, args, kwargs)

    def _safe_post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._guarded(self._post_step, optimizer, args, kwargs)

    def _pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._opt_steps += 1
        scale = getattr(optimizer, "grad_scale", None)
        found = getattr(optimizer, "found_inf", None)
        self._record(scale if isinstance(scale, torch.Tensor) else None,
                     found if isinstance(found, torch.Tensor) else None)
        if self._due(self._step, self.update_every) and self._train_params:
            self._snapshot = self._take_snapshot()

    def _post_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self._snapshot is not None and self._rows:
            self._write_update(len(self._rows) - 1)

    def _write_update(self, r: int) -> None:
        L = self.n_layers
        self._rows[r]["usq"] = update_sq_norms(self._local_params(self._train_params), self._snapshot,
                                               self._train_index, L, in_place=True, dtype=self._rdt)
        self._rows[r]["update"] = True
        self._snapshot = None

    def _set_loss(self, r: int, total: torch.Tensor, n: int = 1) -> None:
        self._rows[r]["loss_t"] = total if n == 1 else total / n
        self._rows[r]["loss"] = True

    def step(self, loss: torch.Tensor | float | None = None) -> None:
        """Record the loss of the current step; without an optimizer, also mark the step.

        With an optimizer, call it once per optimizer step, after (or before)
        ``opt.step()``; several calls between two steps are averaged. Without an
        optimizer, call it after ``backward()`` and before ``zero_grad()``.
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
        if self.optimizer is not None:
            self._check_optimizer_steps()
        if self.optimizer is None:
            r = self._record()
            if self._snapshot is not None:
                self._write_update(r)
            if self._due(self._step + 1, self.update_every) and self._train_params:
                self._snapshot = self._take_snapshot()
        elif (self.scaler is not None and self._opt_steps == self._opt_steps_at_wstep
              and self._meta is not None):
            r = self._new_row()  # the scaler skipped optimizer.step(): no gradients were used
            self._rows[r].update(skipped=True, grads=False)
        self._opt_steps_at_wstep = self._opt_steps
        if lt is None:
            return
        if self._loss_row is not None and self._loss_row < len(self._rows):
            self._set_loss(self._loss_row, lt)
            self._loss_row = None
        elif self._pending_loss is None:
            self._pending_loss = (lt, 1)
        else:
            self._pending_loss = (self._pending_loss[0] + lt, self._pending_loss[1] + 1)

    def _check_optimizer_steps(self) -> None:
        """Warn once when ``w.step()`` keeps coming without a step of the watched optimizer."""
        self._idle_wsteps = self._idle_wsteps + 1 if self._opt_steps == self._opt_steps_at_wstep else 0
        if self._idle_wsteps == IDLE_WSTEPS and self.scaler is None:
            warnings.warn(f"graddoctor.measure.monitor.watcher: {IDLE_WSTEPS} w.step() calls without a step of the "
                          f"{type(self.optimizer).__name__} given to watch() - pass the optimizer "
                          "you step (losses meanwhile are averaged into the next step)", stacklevel=4)

    # ------------------------------------------------------------ flush

    def flush(self, keep_pending: bool = False) -> None:
        """Move the buffered rows to the host (one transfer; distributed: one all_reduce) and
        write them to the sinks. Distributed: every rank must call it at the same point.

        ``keep_pending``: keep back the last row while its loss may still come (``records()``
        called between ``opt.step()`` and ``w.step(loss)``)."""
        all_rows = self._rows
        keep = 1 if keep_pending and all_rows and self._loss_row == len(all_rows) - 1 else 0
        rows = all_rows[: len(all_rows) - keep]
        if not rows:
            return
        n, L = len(rows), self.n_layers
        block = dist_.reduce_block(self._block(rows), self._summed, self.mode)
        block[:, :L].sqrt_()  # squared norms (summed over shards) -> norms
        block[:, 3 * L: 5 * L].sqrt_()
        acts = [(s, self._act_pending.pop(s)) for s in [r["step"] for r in rows] if s in self._act_pending]
        ogs = [(s, self._og_buf.pop(s)) for s in [r["step"] for r in rows] if s in self._og_buf]
        parts = ([block.reshape(-1)] + [a.reshape(-1) for _, a in acts]
                 + [o.reshape(-1).sqrt() for _, o in ogs])
        # float32-accurate statistics written with 8 significant digits, not 17 (JSON: 2x faster)
        flat = round_significant(torch.cat([p.to(self._rdt) for p in parts]), 8).cpu().tolist()
        if keep:  # move the kept row to the front of the ring
            self._ring[0].copy_(self._ring[n])
            self._rows, self._loss_row = all_rows[n:], 0
        else:
            self._rows, self._loss_row = [], None
        for k in [k for k in self._act_pending if k <= rows[-1]["step"]]:  # stale (no step followed)
            del self._act_pending[k]
        width = 5 * L + 2
        off = n * width
        act_of, og_of = {}, {}
        for s, a in acts:
            act_of[s] = flat[off: off + a.numel()]
            off += a.numel()
        for s, o in ogs:
            og_of[s] = flat[off: off + o.numel()]
            off += o.numel()
        records = [self._to_record(info, flat[i * width: (i + 1) * width], act_of.get(info["step"]),
                                   og_of.get(info["step"])) for i, info in enumerate(rows)]
        if self.rank != 0:
            return
        self._history.extend(records)
        for s in self.sinks:
            s.write_steps(records)

    def _block(self, rows: list[dict]) -> torch.Tensor:
        """The statistics of ``rows`` (the first ``len(rows)`` ring rows) as one ``[rows, 5L + 2]``
        block: per-layer squared gradient norms, present-tensor counts, NaN/Inf counts, squared
        weight and update norms (L columns each), then the loss and the AMP found-inf flag."""
        n, L, dev, rdt = len(rows), self.n_layers, self.device, self._rdt
        block = torch.zeros(n, 5 * L + 2, device=dev, dtype=rdt)
        sq = self._ring[:n].to(rdt).square()
        no_grads = [i for i, info in enumerate(rows) if not info["grads"]]
        if no_grads:  # skipped AMP steps: their ring rows were never written
            sq[no_grads] = 0
        block[:, :L].index_add_(1, self._col_index, sq)
        block[:, L: 2 * L] = self._has_all
        if not self._host_check:  # gradient tensors whose norm is NaN/Inf
            block[:, 2 * L: 3 * L].index_add_(1, self._col_index, (~torch.isfinite(sq)).to(rdt))
        for i, info in enumerate(rows):
            if not info["grads"]:
                block[i, L: 2 * L] = 0
            elif "has" in info:
                block[i, L: 2 * L] = info["has"]
            for key, col in (("nonfinite", 2), ("wsq", 3), ("usq", 4)):
                if key in info:
                    block[i, col * L: (col + 1) * L] = info[key]
            if "scale" in info:
                block[i, :L] /= info["scale"].square()
            if "found_inf" in info:
                block[i, 5 * L + 1] = info["found_inf"]
        losses = [i for i, info in enumerate(rows) if info["loss"]]
        if losses:
            block[losses, 5 * L] = torch.stack([rows[i]["loss_t"].to(dev, rdt) for i in losses])
        return block

    def _to_record(self, info: dict, v: list[float], act: list[float] | None,
                   og: list[float] | None) -> dict:
        L, names = self.n_layers, self.layer_names
        lr = info["lr"]
        rec: dict[str, Any] = {
            "type": "step", "step": info["step"],
            "loss": v[5 * L] if info["loss"] else None,
            "skipped": bool(info["skipped"] or v[5 * L + 1] > 0),
            "lr": float(lr) if lr is not None else None,
        }
        if info["grads"]:
            grad = rec["grad_norm"] = dict(zip(names, v[:L]))
            if min(v[L: 2 * L], default=1.0) <= 0:  # layers without a gradient this step: null
                for i in range(L):
                    if v[L + i] <= 0:
                        grad[names[i]] = None
            rec["nonfinite"] = dict(zip(names, map(int, v[2 * L: 3 * L])))
        if info["weights"]:  # on measured steps only; read_run / records() carry it forward
            self._last_weight = (info["step"], dict(zip(names, v[3 * L: 4 * L])))
            rec["weight_norm"] = dict(self._last_weight[1])
        if info["update"]:
            upd = {names[i]: v[4 * L + i] for i in self._train_layers}
            w = self._last_weight[1] if self._last_weight else {}
            rec["update_norm"] = upd
            rec["update_ratio"] = {n: (u / w[n] if w.get(n) else (math.inf if u > 0 else 0.0))
                                   for n, u in upd.items()}
        if act is not None:
            k = len(STAT_NAMES)
            out = {}
            for j, site in enumerate(self.site_names):
                row = act[j * k: (j + 1) * k]
                if row[5] <= 0:
                    continue
                out[site] = {"mean": row[0], "std": row[1], "zero_frac": row[2], "sat_frac": row[3]}
                if not math.isnan(row[4]):
                    out[site]["dead_frac"] = row[4]
            rec["act"] = out
        if og is not None:
            rec["out_grad_norm"] = {n: og[i] for i, n in enumerate(names)
                                    if self._layer_modules[i] is not None}
        return rec

    # ------------------------------------------------------------ results

    def records(self) -> tuple[dict, list[dict]]:
        """``(meta, steps)`` as in the run log (flushes first; distributed: flushed rows only)."""
        if self.mode == "single":
            self._guarded(self.flush, self.attached, always=True)
        sink = self._jsonl()
        if sink is not None and self._history.maxlen == 0 and sink.path.exists():
            meta, steps = read_run(sink.path, run=self.run_id)
            return meta, steps
        return dict(self._meta or {}), carry_weights(list(self._history or []))

    def _jsonl(self) -> Any:
        from graddoctor.runlog.sinks.jsonl import JsonlSink

        return next((s for s in self.sinks if isinstance(s, JsonlSink)), None)

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"Watcher({type(self.root).__name__}, {state}, step={self._step})"


def check_one_device(model: nn.Module) -> None:
    """One-line InputError when the parameters of ``model`` live on several devices (model
    parallelism: the ring buffer and the fused reductions need one device; not supported yet).

    Example:
        >>> check_one_device(nn.Linear(2, 2))  # fine: one device
    """
    devices = sorted({str(p.device) for p in model.parameters()})
    if len(devices) > 1:
        raise InputError(f"watch() needs the parameters on one device, found {', '.join(devices)} "
                         "(model parallelism is not supported yet) - watch one device's part")


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
    raise InputError(f"w.step(loss): loss must be a scalar tensor or a number, got "
                     f"{type(loss).__name__}")


def _is_compiled(model: nn.Module) -> bool:
    return hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module)


def _make_sink(spec: Any, log_dir: str, fsync: bool) -> Any:
    if isinstance(spec, str):
        from graddoctor.runlog.sinks import make_sink

        return make_sink(spec, log_dir, **({"fsync": fsync} if spec == "jsonl" else {}))
    from graddoctor.runlog.sinks import Sink

    if not isinstance(spec, Sink):
        raise InputError(f"sink {spec!r} lacks write_meta/write_steps/close - see graddoctor.runlog.sinks.Sink")
    return spec


__all__ = ["ACTIVATION_EVERY", "FLUSH_EVERY", "UPDATE_EVERY", "Monitor", "check_one_device"]
