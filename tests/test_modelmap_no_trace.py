"""ModelMap leaves no trace on the model's tensors: parameters, buffers (changed in place or
reassigned) and tensors the model keeps carry no attribute after mapping."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


class _KeepsState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("ema", torch.zeros(4))
        self.register_buffer("ema2", torch.zeros(4))
        self.last: torch.Tensor | None = None

    def forward(self, x):
        y = self.lin(x)
        self.ema.mul_(0.9).add_(y.mean(0))  # in place: the op returns the buffer itself
        self.ema2 = self.ema2 * 0.9 + y.mean(0)  # reassigned
        self.lin.weight.data.mul_(1.0)
        self.last = y.relu()  # kept by the model
        return y + self.ema


def _attributes(m: _KeepsState) -> dict[str, dict]:
    tensors = dict(m.named_parameters()) | dict(m.named_buffers()) | {"last": m.last}
    return {n: dict(vars(t)) for n, t in tensors.items()}


def test_modelmap_leaves_no_attribute_on_parameters_buffers_or_kept_tensors():
    """After ``ModelMap`` the model's tensors carry exactly the Python attributes a plain forward
    leaves them (none)."""
    m = _KeepsState()
    m(torch.randn(3, 4))
    plain = _attributes(m)
    gd.ModelMap(m, torch.randn(3, 4))
    assert _attributes(m) == plain == {n: {} for n in plain}
