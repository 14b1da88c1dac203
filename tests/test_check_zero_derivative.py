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


class DeadWithSignedSqrt(nn.Module):
    """A dead ReLU layer (bias -10) and a signed square root, sign(x) * sqrt(|x|): torch.sign is in
    the graph but blocks nothing (the sqrt path carries the gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.head = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 10)
        nn.init.constant_(self.l2.bias, -10.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.l2(torch.relu(self.l1(x))))
        return self.head(torch.sign(h) * torch.sqrt(h.abs() + 1e-6))


def test_a_zero_derivative_op_that_blocks_nothing_leaves_the_real_fault_named():
    torch.manual_seed(0)
    report = gd.check(DeadWithSignedSqrt(), torch.randn(16, 32), target=torch.randint(0, 10, (16,)))
    assert "vanishing-gradient" in report.codes and "no-gradient" not in report.codes
