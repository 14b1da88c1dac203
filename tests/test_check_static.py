"""Each static rule on a model that must trigger it and on healthy controls that must not."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graddoctor import zoo
from graddoctor.diagnose.checktime import static as static
from graddoctor.diagnose.checktime.static import init_gain
from graddoctor.modelmap import ModelMap


def run(rule, model: nn.Module, x) -> list:
    return rule(ModelMap(model, x), model)


X = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- saturating-hidden-activation


def test_saturating_hidden_triggers_on_sigmoid_and_tanh_mlps():
    # tanh alone is info: tanh' = 1 at 0, so a scale-matched init compounds nothing (poor-init and the
    # probe read its init and saturation); sigmoid' <= 1/4 compounds at any init
    for act, severity in (("sigmoid", "warning"), ("tanh", "info")):
        (f,) = run(static.saturating_hidden_activation, zoo.mlp(depth=6, activation=act), X)
        assert f.severity == severity and len(f.layers) == 5 and f.evidence["kinds"] == [act]
    mixed = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Tanh(),
                          nn.Linear(16, 2))
    (f,) = run(static.saturating_hidden_activation, mixed, torch.randn(8, 16))
    assert f.severity == "warning"


def test_one_hidden_tanh_is_only_info():
    (f,) = run(static.saturating_hidden_activation, zoo.mlp(depth=2, activation="tanh"), X)
    assert f.severity == "info"


class Gated(nn.Module):
    """Output sigmoid, a GLU-style gate and an SE-style gate: none is a hidden activation."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 32)
        self.b = nn.Linear(64, 32)
        self.se = nn.Linear(32, 32)
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        h = F.relu(self.a(x)) * torch.sigmoid(self.b(x))  # GLU gate
        h = h * self.se(h).sigmoid()  # squeeze-excitation gate
        return torch.sigmoid(self.out(h))  # output activation


class ParamGate(nn.Module):
    """sigmoid of a learned scalar and tanh of the raw input: no hidden activation either."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))
        self.fc = nn.Linear(64, 8)

    def forward(self, x):
        return self.fc(torch.tanh(x)) * torch.sigmoid(self.alpha)


def test_gates_and_output_activations_are_not_flagged():
    assert run(static.saturating_hidden_activation, Gated(), X) == []
    assert run(static.saturating_hidden_activation, ParamGate(), X) == []
    assert run(static.saturating_hidden_activation, zoo.mlp(depth=6, activation="relu"), X) == []


def test_hand_written_lstm_cell_gates_are_exempt():
    class Cell(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ih = nn.Linear(4, 32)
            self.hh = nn.Linear(8, 32)
            self.head = nn.Linear(8, 1)

        def forward(self, x):
            h = c = x.new_zeros(x.shape[0], 8)
            for t in range(x.shape[1]):
                i, f, g, o = (self.ih(x[:, t]) + self.hh(h)).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            return self.head(h)

    assert run(static.saturating_hidden_activation, Cell(), torch.randn(2, 5, 4)) == []


# ---------------------------------------------------------------- poor-init


def test_init_gain_matches_he_and_xavier():
    he = nn.init.kaiming_normal_(torch.empty(512, 512), nonlinearity="relu")
    assert init_gain(he, "Linear", "relu") == pytest.approx(1.0, abs=0.02)
    xav = nn.init.xavier_normal_(torch.empty(256, 512))
    assert init_gain(xav, "Linear", "saturating") == pytest.approx(1.0, abs=0.02)  # in the band
    lecun = nn.init.normal_(torch.empty(256, 512), std=(1 / 512) ** 0.5 * 1.05)
    assert init_gain(lecun, "Linear", "saturating") == 1.0  # between LeCun and Xavier
    default = nn.Linear(512, 512).weight  # kaiming_uniform(a=sqrt(5)): std 1/sqrt(3 fan_in)
    assert init_gain(default, "Linear", "relu") == pytest.approx(1 / math.sqrt(6), rel=0.02)
    conv = nn.Conv2d(16, 32, 3).weight  # fan_in = 16*9
    assert init_gain(conv, "Conv2d", "relu") == pytest.approx(1 / math.sqrt(6), rel=0.05)


def test_poor_init_triggers_on_normal01_and_deep_default_relu():
    (f,) = run(static.poor_init, zoo.mlp(depth=20, activation="relu", init="normal", std=1.0), X)
    assert f.evidence["chain_orders"] > 10 and "grows" in f.message
    (f,) = run(static.poor_init, zoo.mlp(depth=20, activation="relu"), X)
    assert f.evidence["chain_orders"] == pytest.approx(19 * math.log10(1 / math.sqrt(6)), abs=0.3)
    assert "shrinks" in f.message


def test_poor_init_controls():
    for net in (zoo.mlp(depth=20, activation="relu", init="he"),
                zoo.mlp(depth=20, activation="tanh", init="xavier"),
                zoo.mlp(depth=3, activation="relu"),  # PyTorch default, 3 layers: passes
                zoo.mlp(depth=5, activation="tanh")):  # tanh keeps more of the scale: passes at 5
        assert run(static.poor_init, net, X) == [], net
    # PyTorch's default compounds past 10x from 4 ReLU layers (0.78 vs 1.17 orders) and 6 tanh layers
    for net, layers in ((zoo.mlp(depth=4, activation="relu"), 3), (zoo.mlp(depth=6, activation="tanh"), 5)):
        (f,) = run(static.poor_init, net, X)
        assert f.evidence["chain_layers"] == layers and -1.5 < f.evidence["chain_orders"] < -1.0, net
    # a normalisation after each layer rescales the signal: init scale does not compound
    assert run(static.poor_init, zoo.mlp(depth=20, activation="relu", norm="batch"), X) == []
    # PyTorch's default scale before tanh at depth: Glorot & Bengio's "standard" init
    (f,) = run(static.poor_init, zoo.mlp(depth=20, activation="tanh"), X)
    assert f.evidence["chain_orders"] < -4 and f.remedies[0] == "xavier-init"
    # a BatchNorm in the middle of a plain tanh stack splits the run in two
    half = nn.Sequential(*zoo.mlp(depth=10, activation="tanh")[:-1], nn.BatchNorm1d(64),
                         *zoo.mlp(depth=10, activation="tanh", in_features=64))
    (f,) = run(static.poor_init, half, X)
    assert f.evidence["chain_layers"] < 10


class _TwoHeads(nn.Module):
    """Three default-init ReLU layers, then two heads side by side (a VAE's mu and logvar)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = zoo.mlp(depth=3, activation="relu")[:-1]
        self.mu, self.logvar = nn.Linear(64, 64), nn.Linear(64, 64)
        self.out = nn.Sequential(nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        return self.out(self.mu(h) + self.logvar(h).tanh())


def test_poor_init_counts_layers_side_by_side_once():
    (f,) = run(static.poor_init, _TwoHeads(), X)
    assert not {"mu", "logvar"} <= set(f.layers), f.layers  # one of the two, not both in series
    assert f.evidence["chain_layers"] == 3, f.evidence


def test_poor_init_single_layer_and_zero_init():
    net = zoo.mlp(depth=20, activation="relu", init="he", residual="plain")
    assert run(static.poor_init, net, X) == []
    with torch.no_grad():
        net[3].body[0].weight.mul_(100.0)  # one branch 100x too large
    (f,) = run(static.poor_init, net, X)
    assert f.layers == ["3.body.0"]
    with torch.no_grad():
        net[3].body[0].weight.zero_()  # deliberate zero init (ReZero-like): fine
    assert run(static.poor_init, net, X) == []


# ---------------------------------------------------------------- deep-without-skip


def test_deep_without_skip():
    (f,) = run(static.deep_without_skip, zoo.mlp(depth=40, init="he"), X)
    assert f.evidence["shortest_weight_path"] == 40
    assert run(static.deep_without_skip, zoo.mlp(depth=20, init="he"), X) == []  # not deep
    assert run(static.deep_without_skip, zoo.mlp(depth=40, init="he", residual="plain"), X) == []
    # norms are not counted: 25 Linear + 24 BatchNorm is 49 layers but 25 weight layers
    assert run(static.deep_without_skip, zoo.mlp(depth=25, norm="batch"), X) == []


def test_densenet_counts_as_skip():
    net = zoo.densenet(depth=40)
    x = torch.randn(4, 64)
    assert run(static.deep_without_skip, net, x) == []


# ---------------------------------------------------------------- small-batch-batchnorm


def test_small_batch_batchnorm_1d():
    net = zoo.mlp(depth=3, norm="batch")
    (f,) = run(static.small_batch_batchnorm, net, X[:4])
    assert f.evidence["batch"] == 4 and len(f.layers) == 2
    assert run(static.small_batch_batchnorm, net, X[:8]) == []
    assert run(static.small_batch_batchnorm, zoo.mlp(depth=3, norm="layer"), X[:2]) == []
    assert run(static.small_batch_batchnorm, net.eval(), X[:2]) == []


# ---------------------------------------------------------------- long-sequence-rnn


@pytest.mark.parametrize("cell,steps,flagged", [
    ("rnn", 300, True), ("rnn", 150, False), ("lstm", 300, False), ("gru", 300, False), ("rnn", 600, True),
])
def test_long_sequence_rnn(cell: str, steps: int, flagged: bool):
    x = torch.randn(2, steps, 2)
    found = run(static.long_sequence_rnn, zoo.rnn(cell, hidden_size=8), x)
    assert bool(found) == flagged
    if found:
        assert found[0].evidence["steps"] == steps
        assert ("attention" in found[0].message) == (steps > static.RNN_VERY_LONG)


def test_long_sequence_rnn_cell_loop_and_time_major():
    class Loop(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.RNNCell(2, 8)

        def forward(self, x):
            h = x.new_zeros(x.shape[0], 8)
            for t in range(x.shape[1]):
                h = self.cell(x[:, t], h)
            return h

    (f,) = run(static.long_sequence_rnn, Loop(), torch.randn(2, 250, 2))
    assert f.evidence["steps"] == 250
    (f,) = run(static.long_sequence_rnn, nn.RNN(2, 8), torch.randn(260, 2, 2))  # (T, B, F)
    assert f.evidence["steps"] == 260


def test_every_rule_is_registered():
    assert set(static.STATIC_RULES) == {
        "saturating-hidden-activation", "poor-init", "deep-without-skip", "small-batch-batchnorm",
        "long-sequence-rnn", "degenerate-norm"}
