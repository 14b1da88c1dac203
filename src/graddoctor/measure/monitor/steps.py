"""The step path of watch: what one optimizer step writes into its ring row.

``StepWriter.write`` runs in the optimizer's step pre-hook, where gradients are final
(accumulated, unscaled by a ``GradScaler``, all-reduced by DDP): one fused reduction of the
gradient norms into the ring (``Ring.write``) and, on sampled steps, the weight norms; no
host read of a device value, except on CPU, where a host read is free: one bool per step
decides whether to count the NaN/Inf values (only when a norm is non-finite). Update norms
are exact but sampled: the pre-hook snapshots the trainable weights, the post-hook measures
``||w_after - w_before||`` in the snapshot and frees it (at most one copy of the weights,
only during that step). Pairing ``w.step(loss)`` with the steps: ``pairing``. With a closure
(``opt.step(closure)``) the write waits for the closure's first evaluation (``pairing.ClosureStep``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.measure.monitor.layers import WatchedLayers
    >>> from graddoctor.measure.monitor.schedule import Schedule, due
    >>> net = nn.Linear(2, 1)
    >>> layers = WatchedLayers(net, None)
    >>> writer = StepWriter(layers, Schedule())
    >>> net(torch.ones(1, 2)).sum().backward()
    >>> row = writer.ring.append(1); writer.write(row, host_check=True)
    >>> row.weight_sq is not None, round(writer.ring.flush_block(1, False)[0, 0].item(), 4)
    (True, 1.7321)
"""

from __future__ import annotations

import math
import warnings
import weakref
from typing import Any

import torch

from graddoctor.measure import distributed as dist_
from graddoctor.measure.monitor.layers import WatchedLayers
from graddoctor.measure.monitor.ring import Ring, Row
from graddoctor.measure.monitor.schedule import Schedule, due
from graddoctor.measure.stats import nonfinite_counts
from graddoctor.stack import user_level

#: the gradient norms are checked for tiny tensors (``TensorNorms.note``) on these steps' schedule
TINY_EVERY = 100
#: without an optimizer, ``w.step()`` warns when its first this many calls found no gradient
ORDER_CALLS = 3


class StepWriter:
    """Writes the statistics of a training step into its ring row.

    Args:
        layers: the watched layers.
        schedule: the sampling schedule (ring size, weight and update norms).
        optimizer: the watched optimizer (every group's learning rate is recorded), or None.
        root: the unwrapped model (to follow a part frozen or unfrozen mid-run); None: the
            optimizer's parameters are taken as they were at setup.
    """

    def __init__(self, layers: WatchedLayers, schedule: Schedule, optimizer: Any = None,
                 root: Any = None) -> None:
        self.layers, self.schedule, self.optimizer, self.root = layers, schedule, optimizer, root
        self.ring = Ring(layers.local(layers.params), layers.index, layers.n_layers, schedule.flush_every,
                         layers.acc, layers.rdt)
        self.params = [layers.params[i] for i in self.ring.norms.order]  # in ring column order
        self.snapshot: list[torch.Tensor] | None = None
        self.snapshot_layers: list[int] = []  # the layers the snapshot holds
        self.order = GradOrder()
        self._first: weakref.ref | None = None  # the first gradient tensor of the previous step
        self._version = 0  # ... and its version counter then

    def write(self, row: Row, host_check: bool, scale: torch.Tensor | None = None,
              found_inf: torch.Tensor | None = None) -> None:
        """The gradient norms into the last ring row, and the rest of the step into ``row``.

        Args:
            row: the step's row (the ring's last).
            host_check: count NaN/Inf values exactly when a norm is non-finite (one host read).
            scale: the gradient scale a fused optimizer has not divided by yet (divided at flush).
            found_inf: a fused optimizer's AMP flag.
        """
        # a frozen parameter's .grad is stale (frozen without zero_grad): not this step's gradient
        grads = [p.grad if p.requires_grad else None for p in self.params]
        # never cleared: the optimizer's first gradient is last step's tensor plus exactly one backward
        # (zero_grad(set_to_none=False) adds a second change; set_to_none=True makes a new tensor)
        first = _first_grad(self.optimizer) if self.optimizer is not None else next(
            (g for g in grads if g is not None), None)
        row.kept = (first is not None and self._first is not None and self._first() is first
                    and first._version == self._version + 1)
        self._first, self._version = (None, 0) if first is None else (weakref.ref(first), first._version)
        if self.layers.sharded:
            grads = [None if g is None else dist_.local(g) for g in grads]
        norms, grads, cols = self.ring.write(grads)
        if host_check and cols is None and due(row.step, TINY_EVERY):  # float64 sums for tiny
            self.ring.norms.note(norms)  # (denormal-squared) gradients: a look now and then
        if host_check and grads and not math.isfinite(norms.sum().item()):
            index = self.ring.col_index if cols is None else self.ring.col_index[cols]
            row.nonfinite = nonfinite_counts(grads, index, self.layers.n_layers)
        if scale is not None:
            row.scale = scale.detach().to(self.layers.rdt)
        if found_inf is not None:
            row.found_inf = found_inf.float().sum()
        if self.schedule.weights(row.step):
            row.weight_sq = self.layers.weight_sq()
        if self.optimizer is not None:
            row.lrs = [v.detach().clone() if isinstance(v, torch.Tensor) else v
                       for v in (g.get("lr") for g in self.optimizer.param_groups)]

    def snapshot_for(self, step: int) -> None:
        """Copy the trainable weights (trainable now: ``WatchedLayers.refresh``) when step ``step``
        measures its update; the layers measured go with the snapshot."""
        if not due(step, self.schedule.update_every):
            return
        self.layers.refresh(self.root, self.optimizer)
        if self.layers.train_params:
            self.snapshot, self.snapshot_layers = self.layers.snapshot(), self.layers.train_layers

    def write_update(self, recorded_after: bool = False) -> None:
        """The update since the snapshot into the last row; the snapshot is freed.

        Args:
            recorded_after: the step was recorded after it moved the weights (its closure never
                ran): its snapshot is not the weights before it, so no update is written.
        """
        if self.snapshot is not None and self.ring.rows:
            if not recorded_after:
                row = self.ring.rows[-1]
                row.update_sq, row.update_layers = self.layers.update_sq(self.snapshot), self.snapshot_layers
            self.snapshot = None

    def marked(self, step: int) -> None:
        """After ``w.step()`` marked step ``step`` (no optimizer): its update, the check that its
        first calls saw gradients (``GradOrder``), the next step's weight snapshot."""
        self.write_update()
        self.order.note(self.params)
        self.snapshot_for(step + 1)


class GradOrder:
    """Warns once when the first ``ORDER_CALLS`` calls of ``w.step()`` (no optimizer) found no
    gradient on any trainable parameter: ``w.step()`` runs before ``loss.backward()`` or after
    ``optimizer.zero_grad()``, and no gradient norm is recorded. Only those first calls look
    (``p.grad is None``: no device work).

    Example:
        >>> p = torch.nn.Parameter(torch.ones(1))
        >>> order = GradOrder(); p.grad = torch.ones(1); order.note([p]); order.empty
        -1
    """

    def __init__(self) -> None:
        self.empty = 0  # the first calls that found no gradient; -1: done (a gradient seen, or warned)

    def note(self, params: list[Any]) -> None:
        """One ``w.step()`` call, with the watched parameters as they are now."""
        if self.empty < 0:
            return
        trainable = [p for p in params if getattr(p, "requires_grad", False)]
        if not trainable or any(p.grad is not None for p in trainable):
            self.empty = -1
            return
        self.empty += 1
        if self.empty == ORDER_CALLS:
            self.empty = -1
            warnings.warn("graddoctor.watch: no gradients at w.step(): call it after loss.backward() "
                          "and before optimizer.zero_grad(), or pass optimizer= to gd.watch",
                          stacklevel=user_level())


class StepGate:
    """Lets each optimizer step through once: a subclass whose ``step()`` calls
    ``super().step()`` makes torch run the step hooks twice, nested.

    The inner pre-hook call is the outer one again when the first gradient is the same tensor at
    the same version (no backward in between); a step that raised (no post-hook) does not block
    the next one, whose backward changed that gradient. "The same tensor" is a weak reference,
    not ``id()``: after ``zero_grad()`` frees the gradient, the next backward's new one often
    gets the freed one's address (and version 0), which ``id()`` would take for the same tensor.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
        >>> gate = StepGate()
        >>> gate.enter(opt), gate.enter(opt), gate.exit(), gate.exit()
        (True, False, True, False)
    """

    def __init__(self) -> None:
        self.inside = False
        self.grad: weakref.ref | None = None  # the first gradient at the outer pre-hook (None: none)
        self.version = 0
        self.paused = False  # graddoctor's own steps run (an LR sweep): no step goes through

    def enter(self, optimizer: Any) -> bool:
        """The step pre-hook: True unless it is the inner call of a nested pair (or paused)."""
        if self.paused:
            return False
        g = _first_grad(optimizer)
        same = (self.grad is None and g is None) or (
            self.grad is not None and self.grad() is g and g is not None and g._version == self.version)
        if self.inside and same:
            return False
        self.inside = True
        self.grad, self.version = (None, 0) if g is None else (weakref.ref(g), g._version)
        return True

    def exit(self) -> bool:
        """The step post-hook: True once per step."""
        was, self.inside = self.inside, False
        return was


def _first_grad(optimizer: Any) -> torch.Tensor | None:
    """The gradient of the optimizer's first parameter that has one, or None."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                return p.grad
    return None


__all__ = ["ORDER_CALLS", "GradOrder", "StepGate", "StepWriter"]
