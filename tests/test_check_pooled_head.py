"""check: a Linear head after a global average pool is not compared with the convs under it.

Per element, a conv's gradient under a global average pool of an HxW map is 1/(H*W) of the pooled
feature's, so a healthy 2-conv net read as 4.3 orders of "vanishing" at 64x64 (an error); plain
autograd puts its conv and head weight gradients under 2 orders apart.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime.trend import trend_of_logs


def _gap_cnn(depth: int = 2, act: type[nn.Module] = nn.ReLU, he: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    c = 3
    for i in range(depth):
        conv = nn.Conv2d(c, 32 if i == 0 else 64, 3, padding=1)
        if he:
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        layers += [conv, act()]
        c = conv.out_channels
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))


def _weight_grad_orders(net: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> float:
    """The oracle: log10 of the head's weight-gradient RMS over the first conv's."""
    F.cross_entropy(net(x), y).backward()
    rms = [m.weight.grad.pow(2).mean().sqrt().item() for m in net if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.zero_grad()
    return float(torch.tensor(rms[-1] / rms[0]).log10())


@pytest.mark.parametrize("size", [16, 64])
def test_healthy_pooled_cnn_gets_no_gradient_finding(size: int) -> None:
    net, x = _gap_cnn(), torch.randn(16, 3, size, size)
    y = torch.randint(0, 10, (16,))
    assert _weight_grad_orders(net, x, y) < 2.0
    codes = {f.code for f in gd.check(net, x, target=y).findings}
    assert not codes & {"vanishing-gradient", "exploding-gradient"}


def test_deep_sigmoid_cnn_with_pooled_head_still_vanishes() -> None:
    net, x = _gap_cnn(10, nn.Sigmoid, he=False), torch.randn(16, 3, 32, 32)
    f = next(f for f in gd.check(net, x, target=torch.randint(0, 10, (16,))).findings if f.code == "vanishing-gradient")
    assert f.severity == "error" and f.evidence["orders_over_depth"] >= 4


def test_sigmoid_head_after_a_healthy_trunk_still_vanishes() -> None:
    """Trunk and head are in series: a flat ReLU trunk does not hide the head's decay (a median of
    the two roles' slopes read the trunk's 0 for a 6-layer sigmoid head's 4.6 orders)."""
    torch.manual_seed(0)
    trunk = _gap_cnn(8)[:-1]  # 8 He-init ReLU convs, the pool and the flatten
    head: list[nn.Module] = [m for _ in range(5) for m in (nn.Linear(64, 64), nn.Sigmoid())]
    net = nn.Sequential(*trunk, *head, nn.Linear(64, 10))
    report = gd.check(net, torch.randn(16, 3, 16, 16), target=torch.randint(0, 10, (16,)))
    f = next(f for f in report.findings if f.code == "vanishing-gradient")
    assert f.severity in ("warning", "error") and f.evidence["orders_over_depth"] >= 2


def test_trend_roles_hold_one_kind() -> None:
    names, logs = ["0", "2", "4", "8"], [-6.0, -6.1, -6.0, -1.7]
    assert trend_of_logs(names, logs)["orders"] > 2  # one role: the head's step reads as a decay
    flat = trend_of_logs(names, logs, kinds=["conv", "conv", "conv", "linear"])
    assert abs(flat["orders"]) < 0.5
    chain = trend_of_logs(["a", "b", "c", "d"], [-6.0, -6.1, -6.0, -1.7], chain=[True] * 4,
                          kinds=["conv", "conv", "conv", "linear"])
    assert abs(chain["orders"]) < 0.5
