"""Probe rules: pure functions on synthetic profiles, and the findings each model must (not) raise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.checktime.probe_rules import (
    depth_trend,
    gradient_flow,
    role,
    signal_propagation,
    through_time,
)
from graddoctor.measure.probe import ProbeResult
from graddoctor.modelmap import ModelMap

MAP = ModelMap(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2)), torch.randn(1, 2))


def result(grads, var=None, names=None, time_grad=None) -> ProbeResult:
    names = names or [str(2 * i) for i in range(len(grads))]
    return ProbeResult(layers=names, kinds=["linear"] * len(names), grad_rms=list(grads),
                       act_var=list(var or [1.0] * len(grads)), time_grad=time_grad)


def test_role_and_depth_trend():
    assert role("layers.10.self_attn") == "layers.#.self_attn" and role("fc1") == "fc1"
    t = depth_trend([str(i) for i in range(11)], [10.0 ** (i - 10) for i in range(11)])
    assert t["orders"] == pytest.approx(10) and t["rate"] == pytest.approx(1)
    # alternating layer kinds with no depth trend: no trend, though neighbours differ 1000x
    names = [f"h.{i // 2}.{'q' if i % 2 == 0 else 'mlp'}" for i in range(16)]
    flat = [1e-6 if i % 2 == 0 else 1e-3 for i in range(16)]
    assert depth_trend(names, flat)["orders"] == pytest.approx(0, abs=1e-9)
    assert depth_trend(names, flat)["roles"] == 2
    assert depth_trend(["a", "b"], [1.0, 2.0]) is None  # too short to call a trend


@pytest.mark.parametrize("orders,severity", [(1.5, None), (2.5, "warning"), (4.5, "error")])
def test_gradient_thresholds(orders: float, severity: str | None):
    n = 10
    down = [10.0 ** (orders * (i / (n - 1) - 1)) for i in range(n)]  # input side smaller
    found = gradient_flow(result(down), MAP)
    assert [f.severity for f in found] == ([severity] if severity else [])
    if severity:
        assert found[0].code == "vanishing-gradient" and found[0].step == 0
        assert found[0].evidence["orders_over_depth"] == pytest.approx(orders)
    up = list(reversed(down))
    found = gradient_flow(result(up), MAP)
    assert [f.code for f in found] == (["exploding-gradient"] if severity else [])


def test_underflow_and_overflow():
    found = gradient_flow(result([0.0, 0.0, 1e-30, 1e-10, 1.0]), MAP)
    assert found[0].code == "vanishing-gradient" and found[0].severity == "error"
    found = gradient_flow(result([math.inf, 1.0, 1.0]), MAP)
    assert found[0].code == "exploding-gradient" and found[0].evidence["first_non_finite"] == "0"
    assert signal_propagation(result([1, 1, 1], var=[1.0, math.nan, 1.0]), MAP)[0].code == "signal-explosion"


def test_signal_thresholds_are_in_std_orders():
    n = 9
    var_down = [10.0 ** (-8 * i / (n - 1)) for i in range(n)]  # variance -8 orders = std -4
    (f,) = signal_propagation(result([1.0] * n, var=var_down), MAP)
    assert f.code == "signal-collapse" and f.severity == "error"
    assert f.evidence["std_orders_over_depth"] == pytest.approx(4)
    var_up = [10.0 ** (3 * i / (n - 1)) for i in range(n)]  # std +1.5 orders: below the warning
    assert signal_propagation(result([1.0] * n, var=var_up), MAP) == []


def test_through_time_rules():
    decay = [10.0 ** (-0.1 * (99 - t)) for t in range(100)]  # 9.9 orders from last to first
    p = result([1.0] * 3, time_grad=decay)
    (f,) = through_time(p, MAP, "vanilla")
    assert f.code == "vanishing-gradient" and f.evidence["orders_over_time"] > 8
    assert through_time(p, MAP, "gated") == [] and through_time(p, MAP, None) == []
    grow = list(reversed(decay))
    assert through_time(result([1.0] * 3, time_grad=grow), MAP, "vanilla")[0].code == "exploding-gradient"
    # trailing steps the loss never reads (exact zeros) are not "vanishing at the end"
    flat = [1.0] * 20 + [0.0]
    assert through_time(result([1.0] * 3, time_grad=flat), MAP, "vanilla") == []


# ---------------------------------------------------------------- on models


def test_small_init_tanh_collapses():
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    r = gd.check(zoo.mlp(depth=20, activation="tanh", init="normal", std=0.05), x, jacobian_k=0)
    col = r.by_code("signal-collapse")[0]
    assert col.severity == "error" and col.evidence["std_orders_over_depth"] > 4
    assert "signal-explosion" not in r.codes
    healthy = gd.check(zoo.mlp(depth=20, activation="tanh", init="xavier"), x, jacobian_k=0)
    assert not ({"signal-collapse", "signal-explosion"} & healthy.codes)


def test_relu_rnn_with_large_recurrence_explodes_through_time():
    x = torch.randn(4, 60, 2, generator=torch.Generator().manual_seed(0))
    net = zoo.rnn("rnn", nonlinearity="relu", hidden_size=32)
    torch.manual_seed(0)
    with torch.no_grad():  # 5 seeds measured: 15-21 orders over 60 steps
        nn.init.orthogonal_(net.rnn.weight_hh_l0, gain=3.0)
    (f,) = gd.check(net, x, jacobian_k=0).by_code("exploding-gradient")
    assert f.evidence["orders_over_time"] > 4 and f.layers == ["rnn"]
    with torch.no_grad():  # an orthogonal recurrence with gain 1 over 60 steps: no finding
        nn.init.orthogonal_(net.rnn.weight_hh_l0, gain=1.0)
        nn.init.zeros_(net.rnn.bias_hh_l0)
    r = gd.check(net, x, jacobian_k=0)
    assert not ({"exploding-gradient"} & r.codes), str(r)


def test_hand_written_rnn_cell_is_judged_through_time():
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ih = nn.Linear(2, 16)
            self.hh = nn.Linear(16, 16)
            self.head = nn.Linear(16, 1)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], 16)
            for t in range(x.shape[1]):
                h = torch.tanh(self.ih(x[:, t]) + self.hh(h))
            return self.head(h)

    torch.manual_seed(0)
    x = torch.randn(2, 120, 2)
    r = gd.check(Loop(), x, jacobian_k=0)
    # no RNN module: the time axis is the one the cell is stepped along (120 calls)
    assert r.data["probe"]["time_axis"] == 1 and len(r.data["probe"]["time_grad"]) == 120
    (f,) = [f for f in r.by_code("vanishing-gradient") if "steps" in f.evidence]
    assert f.evidence["steps"] == 120 and f.evidence["orders_over_time"] > 4
    assert r.by_code("saturating-hidden-activation")[0].evidence["applications_per_forward"] == 120
    # the same loop over 5 steps: measured, too short to judge
    short = gd.check(Loop(), x[:, :5], jacobian_k=0)
    assert len(short.data["probe"]["time_grad"]) == 5 and "vanishing-gradient" not in short.codes
