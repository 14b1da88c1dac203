"""The root forward hooks of watch: armed only for the forwards that need them.

The first forward maps the model (when no ``example_inputs`` were given); the first forward
(with grad enabled) of an activation-sampled step runs the activation sampler and, opt-in,
the output-gradient hooks. Those hooks are installed for that forward only: unsampled
forwards run with no hook at all. ``torch.compile``: every hook is a no-op while Dynamo traces
it (``hooksafe.eager_only``: no graph break, so ``fullgraph=True`` compiles too); a traced root
hook means the model runs compiled (through a wrapper, ``module.compile()``, a parent or a
compiled train-step function), so ``check_compiled`` turns activation sampling off.
Graddoctor's own forwards (``hooksafe.own_forward``: any watcher's mapping trace) are ignored
by every hook here, so several watchers can share one model: none samples, or unhooks itself
inside, another one's trace.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.measure.monitor.schedule import Schedule
    >>> net = nn.Linear(2, 1)
    >>> seen = []
    >>> fw = SampledForwards(net, Schedule(), seen.append, lambda fn, *a, **k: fn(*a))
    >>> fw.arm(); _ = net(torch.ones(1, 2)); fw.ready = True; fw.disarm()
    >>> len(seen), bool(net._forward_hooks)
    (1, False)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from graddoctor.inputs import bind_call
from graddoctor.measure.monitor.activations import ActivationSampler
from graddoctor.measure.monitor.admission import compiled_wrapper
from graddoctor.measure.monitor.hooksafe import HandleBin, eager_only, in_exception, in_own_forward
from graddoctor.measure.monitor.layers import WatchedLayers
from graddoctor.measure.monitor.output_grads import OutputGradients
from graddoctor.measure.monitor.schedule import Schedule
from graddoctor.modelmap import ModelMap
from graddoctor.stack import user_level


class SampledForwards:
    """The root's forward hooks: the mapping forward and the activation-sampled forwards.

    Args:
        root: the unwrapped model.
        schedule: the sampling schedule (``activations(step)``).
        on_first_forward: called with the first forward's inputs (None when it mixes positional
            and keyword inputs) while no map exists (``ready`` False); it maps the model.
        guard: runs a hook body (``guard(fn, *args)``) so an internal error stops the recording
            instead of the training.
        sample: sample forwards at all (rank 0 only, when distributed).
        given: the model watch was given: when it is a ``torch.compile`` wrapper of ``root``, the
            forward hooks go on it (they run eagerly around the compiled call, so its first forward
            still maps the model); else on ``root``.
    """

    def __init__(self, root: nn.Module, schedule: Schedule, on_first_forward: Callable[[Any], None],
                 guard: Callable[..., Any], sample: bool = True, given: nn.Module | None = None) -> None:
        self.root, self.schedule, self.sample = root, schedule, sample
        self.hook_on = given if given is not None and compiled_wrapper(given) else root
        self.on_first_forward, self.guard = on_first_forward, guard
        self.ready = False  # the model is mapped
        self.mapping = False  # the map's own forward runs: not a training forward
        self.next_step = 1  # the step the coming forwards belong to
        self.sampler: ActivationSampler | None = None
        self.out_grads: OutputGradients | None = None
        self.acts: dict[int, torch.Tensor] = {}  # step -> activation statistics, until the flush
        self._sampled = 0  # the last step whose forward was sampled
        self._open = False  # a sampled forward started and has not ended yet
        self._handles: list[Any] = []
        self.bin = HandleBin()  # hooks released while torch iterated them, removed at the next safe point
        self.hookable = not isinstance(root, torch.jit.ScriptModule)  # TorchScript takes no Python hooks
        self.traced = False  # Dynamo traced a root hook: the model runs compiled
        self._compile_said = False

    def set_up(self, root: nn.Module, mm: ModelMap | None, layers: WatchedLayers, dead_window: int,
               output_grads: bool) -> None:
        """Build the samplers for the mapped model (activation sites of ``mm``, layers' outputs)."""
        self.ready = True
        if mm is not None and mm.activations and self.schedule.activation_every and self.sample:
            conv = {lay.activation_site for lay in mm.layers if lay.kind == "conv" and lay.activation_site}
            sites = [(s.name, s.kind, s.family, s.functional, s.owner) for s in mm.activations]
            self.sampler = ActivationSampler(root, sites, conv, dead_window, self._hook_guard, self.bin)
        if output_grads:
            self.out_grads = OutputGradients(layers.modules, layers.device, layers.rdt, self.bin,
                                             self._hook_guard)

    def _hook_guard(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``guard`` for the samplers' hook bodies: nothing runs in graddoctor's own forwards."""
        return None if in_own_forward() else self.guard(fn, *args)

    def wants(self, step: int) -> bool:
        """Step ``step`` samples its first forward (activation statistics, output gradients)."""
        return ((self.sampler is not None or self.out_grads is not None) and self.sample
                and self.schedule.activations(step))

    def arm(self) -> None:
        """Hook the root's forward (idempotent)."""
        self.bin.empty()
        if not self._handles and self.hookable:
            self._handles = [
                self.hook_on.register_forward_pre_hook(eager_only(self._safe_on_forward, self._on_trace),
                                                    with_kwargs=True, prepend=True),
                self.hook_on.register_forward_hook(eager_only(self._safe_on_forward_end), always_call=True)]

    def disarm(self) -> None:
        """Remove the root's forward hooks (idempotent; later when torch iterates them)."""
        handles, self._handles = self._handles, []
        self.bin.release(handles)

    def close(self) -> None:
        """Remove every hook (the dead-unit windows are kept for a re-attach)."""
        self.disarm()
        if self.out_grads is not None:
            self.out_grads.stop()
        if self.sampler is not None:
            self.sampler.close()
        self.bin.empty()

    def take(self, steps: list[int]) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        """The activation statistics and output-gradient norms of ``steps``, by step; statistics
        of earlier steps are dropped (stale: no step followed their forward)."""
        acts = {s: self.acts.pop(s) for s in steps if s in self.acts}
        for k in [k for k in self.acts if k <= steps[-1]]:
            del self.acts[k]
        return acts, self.out_grads.take(steps) if self.out_grads is not None else {}

    def _on_trace(self) -> None:  # Dynamo replays this store after its graph (no guard, no break)
        self.traced = True

    def begin_step(self, step: int, unmapped: bool) -> bool:
        """The coming forwards belong to ``step``; True when its first forward is sampled (arm the
        hooks). ``unmapped``: the model was set up without a map (``check_compiled``)."""
        self.next_step = step
        self.check_compiled(unmapped)
        return self.wants(step)

    def check_compiled(self, unmapped: bool) -> None:
        """After a forward Dynamo traced (``traced``): activation sampling (and output gradients)
        off, with one warning; ``unmapped``: no eager forward mapped the model either."""
        if not self.traced or self._compile_said:
            return
        self._compile_said = True
        if self.sampler is not None or self.out_grads is not None or unmapped:
            self.sampler, self.out_grads = None, None
            order = (" and the layers are in named_modules order (pass example_inputs= to watch() for the "
                     "execution order)") if unmapped else ""
            warnings.warn("graddoctor.watch: the model runs torch.compile'd, so activation statistics (and output "
                          f"gradients) are off{order}; gradients are recorded as usual", stacklevel=user_level())

    def _safe_on_forward(self, module: nn.Module, args: tuple, kwargs: dict | None = None) -> None:
        # kwargs None: torch calls a hook removed during its forward (from its copy of the
        # pre-hooks) without the kwargs, the with_kwargs flag being removed with the hook
        self.bin.empty()  # safe here: torch iterates a copy of the pre-hooks
        if self._handles and not in_own_forward():  # else a hook released late, or graddoctor's forward
            self.guard(self._on_forward, args, kwargs or {}, module)

    def _safe_on_forward_end(self, module: nn.Module, args: tuple, out: Any) -> None:
        if self._handles and not in_own_forward():  # always: the sampler's hooks come off even
            self.guard(self._on_forward_end, always=True)  # after an internal error

    def _on_forward(self, args: tuple, kwargs: dict, module: nn.Module | None = None) -> None:
        if self.mapping:
            return
        if not self.ready and not _redirected(module):  # (a redirect: the real forward comes inside)
            inputs = (args if len(args) != 1 else args[0]) if not kwargs else (
                kwargs if not args else bind_call(module, args, kwargs) if module is not None else None)
            if inputs is None:  # (mixed, and not bindable to the forward's parameters)
                warnings.warn("graddoctor.watch: the first forward mixes positional and "
                              "keyword inputs; layers in named_modules order - pass example_inputs= to "
                              "watch() for the execution order", stacklevel=2)
            self.mapping = True
            try:
                self.on_first_forward(inputs)
            finally:
                self.mapping = False
        if self._open:  # the last forward ended by a BaseException (no always_call hook ran)
            self._end_interrupted()
        step = self.next_step
        if self._sampled != step and torch.is_grad_enabled() and self.wants(step):
            self._sampled, self._open = step, True
            if self.sampler is not None:
                self.sampler.start()
            if self.out_grads is not None:
                self.out_grads.start(step)

    def _end_interrupted(self) -> None:
        """Clean up after a sampled forward that raised a ``BaseException`` (KeyboardInterrupt):
        its hooks come off, its statistics are dropped, and its step samples its next forward."""
        self._open = False
        if self.out_grads is not None:
            self.out_grads.stop()
        if self.sampler is not None:
            self.sampler.stop()
        if self._sampled == self.next_step:
            self._sampled = 0

    def _on_forward_end(self) -> None:
        if self.mapping:
            return
        self._open = False
        failed = in_exception()  # the user's forward raised: torch runs this hook while it unwinds
        if self.out_grads is not None:
            self.out_grads.stop()
        if self.sampler is not None and self.sampler.active:
            stats = self.sampler.stop()
            if stats is not None and not failed:
                self.acts[self.next_step] = stats
        if failed:
            if self._sampled == self.next_step:
                self._sampled = 0  # the step samples its next forward instead
            return  # (and the root hooks stay: torch is iterating them)
        if self.ready and (self._sampled == self.next_step or not self.wants(self.next_step)):
            self.disarm()  # sampled (or nothing to sample): no hook until the next sampled step


def _redirected(module: nn.Module | None) -> bool:
    """``module.forward`` is a training framework's redirect for this call (Lightning under DDP
    patches it to run ``training_step`` through the DDP wrapper): mapping on it ran the user's
    ``training_step`` a second time at the first step. The real forward, called inside, maps.

    Example:
        >>> _redirected(nn.Linear(1, 1))
        False
    """
    patched = vars(module).get("forward") if module is not None else None
    package = str(getattr(patched, "__module__", None) or "").split(".")[0]
    return patched is not None and package in ("lightning", "pytorch_lightning")


__all__ = ["SampledForwards"]
