"""watch's norms keep their precision: float64 models are accumulated in float64, and norms that
overflow float32 squares are still exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


def test_float64_models_keep_float64_norms():
    """A float64 layer with weights of 1e100 (far beyond float32's range) records its exact
    weight norm; a float32 model records its norm to float32 precision."""
    big = nn.Linear(2, 1).double()
    with torch.no_grad():
        big.weight.fill_(1e100)
    with gd.watch(big, weight_every=1) as w:
        big(torch.ones(1, 2, dtype=torch.float64)).sum().backward()
        w.step()
    assert w.records()[1][0]["weight_norm"][""] == pytest.approx(1e100 * 2 ** 0.5)
    small = nn.Linear(2, 1)
    with gd.watch(small, weight_every=1) as w32:
        small(torch.ones(1, 2)).sum().backward()
        w32.step()
    expected = torch.cat([p.detach().double().flatten() for p in small.parameters()]).norm().item()
    assert w32.records()[1][0]["weight_norm"][""] == pytest.approx(expected, rel=1e-6)


def test_output_gradient_norms_do_not_overflow_float32():
    """``||dL/d output||`` of 1e20-sized gradients (squares overflow float32) is exact."""
    net = nn.Sequential(nn.Linear(2, 4), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    with gd.watch(net, opt, activation_every=1, output_grads=True) as w:
        (net(torch.ones(3, 2)).sum() * 1e20).backward()  # dL/d(output of "1") = 1e20 each
        opt.step()
    og = w.records()[1][0]["out_grad_norm"]
    assert og["1"] == pytest.approx(1e20 * 3 ** 0.5, rel=1e-6)
