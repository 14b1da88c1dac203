"""Opt-in output-gradient norms: ``||dL/d output||`` per layer on activation-sampled forwards.

A forward hook on each layer puts a tensor hook on its output, which adds the squared norm
of the output's gradient to the step's buffer on the device. Pitfalls: it sees the sampled
micro-batch only (before accumulation, and scaled by a GradScaler), fires only if the output
takes part in the backward, cannot see outputs modified in place afterwards, and keeps the
output's autograd node alive until backward (as autograd does anyway).

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    >>> grads = OutputGradients(list(net), torch.device("cpu"), torch.float64)
    >>> grads.start(1); net(torch.ones(1, 2)).sum().backward(); grads.stop()
    >>> grads.take([1])[1][1].item()
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from graddoctor.measure.monitor.hooksafe import HandleBin, eager_only


class OutputGradients:
    """The norm of the gradient of each layer's output, on the steps ``start`` is called for.

    Args:
        modules: the layers' modules (None: a layer without one, not measured).
        device: where the per-step buffers live.
        dtype: their dtype (float64 where available: squared norms above 1e38).
        handles: where the hooks go when removed (``HandleBin``: not while torch iterates them).
        guard: runs each hook body (``guard(fn, *args)``): an internal error stops the recording,
            not the user's forward or backward; None: run it as is.
    """

    def __init__(self, modules: list[nn.Module | None], device: torch.device, dtype: torch.dtype,
                 handles: HandleBin | None = None, guard: Callable[..., Any] | None = None) -> None:
        self.modules = modules
        self._guard = guard if guard is not None else (lambda fn, *a: fn(*a))
        self._bin = handles if handles is not None else HandleBin()
        self.device, self.dtype = device, dtype
        self._handles: list[Any] = []
        self._sq: dict[int, torch.Tensor] = {}  # step -> per-layer squared norms

    def start(self, step: int) -> None:
        """Hook the layers' outputs of the coming forward into step ``step``'s buffer."""
        buf = self._sq[step] = torch.zeros(len(self.modules), device=self.device, dtype=self.dtype)

        def add(i: int, g: torch.Tensor) -> None:
            buf[i] = buf[i] + torch.linalg.vector_norm(g.detach(), dtype=buf.dtype).square()

        def on_output(i: int, out: Any) -> None:
            t = out if isinstance(out, torch.Tensor) else None
            if t is None and isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                t = out[0]
            if t is not None and t.requires_grad:
                t.register_hook(lambda g: self._guard(add, i, g))

        def layer_hook(i: int) -> Any:
            def fwd(module: nn.Module, args: Any, out: Any) -> None:
                if self._sq.get(step) is buf and self._handles:  # else a stale hook (released late)
                    self._guard(on_output, i, out)
            return fwd

        for i, m in enumerate(self.modules):
            if m is not None:
                self._handles.append(m.register_forward_hook(eager_only(layer_hook(i))))

    def stop(self) -> None:
        """Remove the forward hooks (the output hooks fire in the coming backward)."""
        handles, self._handles = self._handles, []
        self._bin.release(handles)

    def take(self, steps: list[int]) -> dict[int, torch.Tensor]:
        """The per-layer norms of the measured steps among ``steps``, forgotten here."""
        return {s: self._sq.pop(s).sqrt() for s in steps if s in self._sq}


__all__ = ["OutputGradients"]
