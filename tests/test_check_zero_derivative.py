"""A zero-derivative op in the forward (torch.round, torch.sign quantisers) is ``no-gradient`` naming
the op and the straight-through fix, not a vanishing gradient with init remedies; a dead ReLU path
with no such op is still a vanishing gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.measure.zero_ops import zero_derivative_ops


class Quantised(nn.Module):
    def __init__(self, op) -> None:
        super().__init__()
        self.enc, self.head, self.op = nn.Linear(32, 64), nn.Linear(64, 10), op

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.op(self.enc(x)))


@pytest.mark.parametrize("op, name", [(torch.round, "round"), (torch.sign, "sign"), (torch.floor, "floor")])
def test_a_quantiser_is_no_gradient_naming_the_op(op, name):
    torch.manual_seed(0)
    report = gd.check(Quantised(op), torch.randn(16, 32), target=torch.randint(0, 10, (16,)))
    assert "vanishing-gradient" not in report.codes
    [f] = [f for f in report.findings if f.code == "no-gradient"]
    assert f.layers == ["enc"] and f.evidence["zero_derivative_ops"] == [name]
    assert f"torch.{name}(x) - x).detach()" in f.message and f.remedies == []


def test_a_straight_through_quantiser_is_healthy():
    torch.manual_seed(0)
    report = gd.check(Quantised(lambda h: h + (torch.round(h) - h).detach()), torch.randn(16, 32),
                      target=torch.randint(0, 10, (16,)))
    assert not [f for f in report.findings if f.severity != "info"], report.findings


def test_a_dead_relu_path_without_such_an_op_is_still_vanishing():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    nn.init.constant_(net[2].bias, -10.0)
    report = gd.check(net, torch.randn(16, 32), target=torch.randint(0, 10, (16,)))
    assert "vanishing-gradient" in report.codes and "no-gradient" not in report.codes


def test_the_graph_walk_finds_only_zero_derivative_ops():
    x = torch.randn(4, requires_grad=True)
    assert zero_derivative_ops((torch.relu(x) * torch.tanh(x)).sum().grad_fn) == []
    assert zero_derivative_ops((torch.ceil(x) * torch.trunc(x * 3)).sum().grad_fn) == ["ceil", "trunc"]
