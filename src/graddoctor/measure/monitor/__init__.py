"""The training monitor (the machinery of ``gd.watch``): hooks, ring buffer, sampling schedule,
activation sampler.

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
  calls ``optimizer.step``), all-reduced by DDP; user clipping in the loop came before.
  No module backward hooks. ``opt.step(closure)`` (LBFGS, or any optimizer given a
  closure) computes the gradients inside the step: the pre-hook wraps the closure and the
  step is recorded when its *first* evaluation returns (the gradient at the weights the step
  starts from; LBFGS, which evaluates it several times, returns that evaluation's loss).
  Without an optimizer, ``w.step()`` marks the step (call it before ``zero_grad``).
- Per step, the norm of every gradient tensor goes into one row of a preallocated
  ring buffer ``[flush_every, tensors]`` on the parameters' device (``ring``): one fused
  ``torch._foreach_norm`` + one ``stack``, and one ``stack`` + ``vector_norm``
  per group of small same-shape tensors such as biases (``norms.TensorNorms``).
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
  2, 4, 8, ...: dense at the start of a run, where init problems show first (``schedule``).
- Activation statistics every ``activation_every`` steps, on the first forward
  (with grad enabled) of the sampled step: see ``graddoctor.measure.monitor.activations``. The
  root's forward hooks are installed for that forward only (and for the first
  forward, which maps the model): unsampled forwards run with no hook at all.
- Do no harm: an internal error in a hook or in ``w.step`` warns once (naming
  graddoctor) and stops the recording (``w.failed`` says why); the steps recorded
  before it are kept, training goes on. Bad arguments (``w.step(loss)`` with a
  non-scalar loss) still raise a one-line ``InputError``. ``w.step()`` called 100
  times without a step of the given optimizer (nor a GradScaler skip) warns once (wrong
  optimizer?); the losses meanwhile are kept as one running sum (bounded memory).
- AMP: with ``scaler=`` given, an iteration where ``scaler.step`` skipped the
  optimizer (inf/nan gradients) is recorded at the next ``w.step()`` as ``skipped: true``
  without gradient norms: a ``scaler.update()`` with no optimizer step since the
  previous ``w.step()`` (once per step or once per micro-batch, before or after
  ``scaler.step``; micro-batches of gradient accumulation are no skip; ``pairing``).
  Optimizers that take the scale themselves (fused Adam:
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
  it runs compiled (a wrapper, ``fullgraph=True``, a compiled parent or function):
  the hooks are no-ops inside compiled code (``hooksafe.eager_only``), so training
  runs as without watch; gradients are recorded, activation samples are off.
- Distributed (see ``graddoctor.measure.distributed``): DDP, FSDP1 (``use_orig_params=True``
  for per-layer names) and FSDP2; every rank attaches, rank 0 writes the sinks;
  the loss is the mean over ranks under FSDP, rank 0's own under DDP (no collective: ranks that
  raise or join early with uneven inputs cannot desynchronise it); activation statistics are
  rank 0's batch.
  ``records()`` then returns the flushed rows only: call it after the ``with``.
- The loss (``pairing``): call ``w.step(loss)`` after ``opt.step()`` or before it, once
  per optimizer step or once per micro-batch. The losses given between two optimizer
  steps are averaged into the later step, the one they lead to; when the loop calls
  ``w.step`` after ``opt.step()``, the loss given right after a step is that step's too
  (its micro-batch ran before the step: ``loss.backward(); if (i + 1) % acc == 0:
  opt.step(); w.step(loss)``, Accelerate's ``accumulate``). Which loop it is: learned at
  the second step (the first closed ``acc - 1`` losses, the second ``acc``). A loss given after a
  backward the optimizer has not used yet is the next step's whatever the order (``w.step``
  every k steps before ``opt.step()``; a batch the loop skipped joins the next step's mean).
- Frozen parts: the updates measured are those of the parameters that train at each sampled
  step (a part unfrozen or frozen mid-run is followed); a layer frozen at attach that records
  gradients later reads back as trainable (``runlog.mark_unfrozen``).
- Opt-in ``output_grads=True``: on activation-sampled steps, a tensor hook on each
  layer's output records ``||dL/d output||`` (``out_grad_norm``). Pitfalls: it sees
  the sampled micro-batch only (before accumulation, and scaled by a GradScaler),
  fires only if the output takes part in the backward, cannot see outputs
  modified in place afterwards, and keeps the output's autograd node alive until
  backward (as autograd does anyway).

Files, one concept each: ``watcher`` (``Monitor``: lifecycle and hooks), ``layers`` (the
watched parameters, weight and update norms), ``steps`` (what a step writes into its row),
``pairing`` (``w.step`` calls against optimizer steps: losses, GradScaler skips, closures), ``ring`` (the device ring and its named flush columns), ``records`` (meta
and step records), ``schedule`` (sampling periods), ``forwards`` (the sampled forwards),
``activations`` (the activation sampler), ``output_grads`` (opt-in output gradients),
``output`` (sinks and history).

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

from graddoctor.measure.monitor.schedule import ACTIVATION_EVERY, FLUSH_EVERY, UPDATE_EVERY
from graddoctor.measure.monitor.watcher import IDLE_WSTEPS, Monitor, check_one_device

__all__ = ["ACTIVATION_EVERY", "FLUSH_EVERY", "IDLE_WSTEPS", "UPDATE_EVERY", "Monitor", "check_one_device"]
