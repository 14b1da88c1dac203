"""Leave no trace: a snapshot of everything a range test changes, and its exact restore.

Saved: every parameter and buffer (values, and each parameter's ``.grad``), each module's
train/eval mode, the optimizer's ``state_dict`` (per-parameter state such as momentum
buffers and Adam moments, and every param-group hyper-parameter), and the global RNGs
(torch CPU, every initialised CUDA device, Python ``random``, NumPy). Restored by copying
the saved values back in place, so tensors keep their identity (views and other
references to them stay valid) and the bits are the same as before.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    >>> before = net.weight.clone()
    >>> snap = Snapshot.take(net, opt)
    >>> net(torch.ones(1, 2)).sum().backward(); opt.step(); _ = torch.rand(1)
    >>> snap.restore(net, opt)
    >>> torch.equal(net.weight, before), opt.state_dict()["state"], net.weight.grad
    (True, {}, None)
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


def _rng_state() -> dict[str, Any]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda, "python": random.getstate(),
            "numpy": np.random.get_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])


@dataclass
class Snapshot:
    """What ``lr_find`` restores (see the module docstring)."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    modes: dict[str, bool]
    optimizer: dict[str, Any]
    rng: dict[str, Any]

    @classmethod
    def take(cls, model: nn.Module, optimizer: torch.optim.Optimizer) -> Snapshot:
        """Copy the state of ``model``, ``optimizer`` and the global RNGs."""
        named = _named_tensors(model)
        return cls(
            tensors={k: t.detach().clone() for k, t in named.items()},
            grads={k: (None if p.grad is None else p.grad.detach().clone())
                   for k, p in model.named_parameters(remove_duplicate=False)},
            modes={k: m.training for k, m in model.named_modules(remove_duplicate=False)},
            optimizer=copy.deepcopy(optimizer.state_dict()),
            rng=_rng_state(),
        )

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Put everything back, bit for bit."""
        with torch.no_grad():
            for k, t in _named_tensors(model).items():
                t.copy_(self.tensors[k])
            for k, p in model.named_parameters(remove_duplicate=False):
                saved = self.grads[k]
                if saved is None:
                    p.grad = None
                elif p.grad is None:
                    p.grad = saved.clone()
                else:
                    p.grad.copy_(saved)
        for k, m in model.named_modules(remove_duplicate=False):
            m.training = self.modes[k]
        optimizer.load_state_dict(copy.deepcopy(self.optimizer))
        _set_rng_state(self.rng)


def _named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    named = dict(model.named_parameters(remove_duplicate=False))
    named.update((k, b) for k, b in model.named_buffers(remove_duplicate=False) if b is not None)
    return named


__all__ = ["Snapshot"]
