"""check on healthy inits the static rules cannot read, and the faults they must still catch.

- Zero-init residual branches whose stream is the model's output (a flow's zero-init coupling,
  Fixup-style blocks with no head): the branches' exactly-zero outputs were read as depth, a
  22-order ``signal-collapse`` error. A layer with an exactly-zero weight is no longer in the
  signal profile (``probe_rules.signal_propagation``).
- SIREN (``sin(30 * Wx)``, weights U(+-sqrt(6/n)/30)): the map sees neither the 30 nor a known
  activation, so ``poor-init`` predicted a 9.3-order shrink; the probe measures none and the
  prediction is dropped (``checktime.measured``).
- SELU with LeCun-normal init (self-normalising): SELU was judged against He's scale; its band
  is now 3/4 LeCun .. He (``static.init_gain``).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime.measured import MEASURED_SHARE, contradicted


class ZeroBranch(nn.Module):
    def __init__(self, d: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, x):
        return x + self.net(x)


class Coupling(nn.Module):
    """RealNVP affine coupling, its s/t net's last layer zero (the flow starts as the identity)."""

    def __init__(self, flip: bool, d: int = 8, h: int = 64) -> None:
        super().__init__()
        self.flip = flip
        self.net = nn.Sequential(nn.Linear(d // 2, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x):
        a, b = x.chunk(2, 1)
        if self.flip:
            a, b = b, a
        s, t = self.net(a).chunk(2, 1)
        b = b * torch.exp(torch.tanh(s)) + t
        return torch.cat([b, a], 1) if self.flip else torch.cat([a, b], 1)


class Sine(nn.Module):
    def __init__(self, i: int, o: int, first: bool = False, w0: float = 30.0) -> None:
        super().__init__()
        self.w0, self.l = w0, nn.Linear(i, o)
        b = 1 / i if first else math.sqrt(6 / i) / w0
        nn.init.uniform_(self.l.weight, -b, b)

    def forward(self, x):
        return torch.sin(self.w0 * self.l(x))


def _plain(depth: int, act, init=None, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        lin = nn.Linear(width, width)
        if init is not None:
            init(lin)
        layers += [lin, act()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def _lecun(lin: nn.Linear) -> None:
    nn.init.normal_(lin.weight, 0, lin.in_features ** -0.5)
    nn.init.zeros_(lin.bias)


def test_zero_init_residual_branches_with_the_stream_as_output_are_healthy():
    torch.manual_seed(0)
    x = torch.randn(64, 64)
    assert gd.check(nn.Sequential(ZeroBranch(), ZeroBranch()), x).findings == []
    flow = nn.Sequential(*[Coupling(flip=i % 2 == 1) for i in range(8)])
    assert gd.check(flow, torch.randn(64, 8)).findings == []


def test_a_collapse_that_runs_to_the_output_is_still_one():
    """Control: a collapse that runs to the output is still one (He x 0.1 per layer, zero biases)."""
    def small(lin: nn.Linear) -> None:
        nn.init.normal_(lin.weight, 0, 0.1 * math.sqrt(2 / 64))
        nn.init.zeros_(lin.bias)
    torch.manual_seed(0)
    net = _plain(12, nn.ReLU, small)
    assert "signal-collapse" in gd.check(net, torch.randn(64, 64)).codes


def test_siren_with_its_prescribed_init_gets_no_poor_init():
    torch.manual_seed(0)
    net = nn.Sequential(Sine(2, 64, first=True), *[Sine(64, 64) for _ in range(7)], nn.Linear(64, 1))
    report = gd.check(net, torch.rand(256, 2) * 2 - 1)
    assert "poor-init" not in report.codes
    static = gd.check(net, torch.rand(256, 2) * 2 - 1, probe=False)  # the prediction the probe dropped
    assert "poor-init" in static.codes and static.findings[0].evidence["chain_orders"] < -9


@pytest.mark.parametrize("depth", [8, 32])
def test_selu_with_lecun_init_gets_no_poor_init(depth):
    torch.manual_seed(0)
    assert "poor-init" not in gd.check(_plain(depth, nn.SELU, _lecun), torch.randn(256, 64), probe=False).codes
    he = _plain(depth, nn.SELU, lambda lin: nn.init.normal_(lin.weight, 0, 0.2 * math.sqrt(2 / 64)))
    assert "poor-init" in gd.check(he, torch.randn(256, 64)).codes  # 5x under the band: still flagged


@pytest.mark.parametrize("depth, act", [(4, nn.ReLU), (5, nn.ReLU), (6, nn.Tanh), (8, nn.Sigmoid)])
def test_pytorch_default_init_in_plain_mlps_is_still_poor_init(depth, act):
    """The calibrated cases (static.py's docstring): the probe measures most of the prediction."""
    torch.manual_seed(0)
    report = gd.check(_plain(depth, act), torch.randn(256, 64))
    f = next(f for f in report.findings if f.code == "poor-init")
    assert not contradicted(f, report.data["probe"])
    logs = dict(zip(report.data["probe"]["layers"], report.data["probe"]["grad_log10"]))
    n = f.evidence["chain_layers"]
    share = (logs[f.layers[0]] - logs[f.layers[-1]]) / (f.evidence["chain_orders"] * (n - 1) / n)
    assert share > 2 * MEASURED_SHARE


class ODENet(nn.Module):
    """A tanh MLP applied 20 times in Euler steps ``h + f(h) / 20`` (or, plain, ``f(h)``)."""

    def __init__(self, residual: bool = True, d: int = 32, steps: int = 20) -> None:
        super().__init__()
        self.residual, self.steps = residual, steps
        self.inp, self.out = nn.Linear(16, d), nn.Linear(d, 4)
        self.f = nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, d))

    def forward(self, x):
        h = self.inp(x)
        for _ in range(self.steps):
            h = h + self.f(h) / self.steps if self.residual else self.f(h)
        return self.out(h)


def test_tanh_inside_euler_steps_is_info_and_a_plain_repeat_vanishes():
    torch.manual_seed(0)
    x = torch.randn(32, 16)
    ode = gd.check(ODENet(), x)
    assert not [f for f in ode.findings if f.severity != "info"], ode.findings
    assert "skip connections" in next(f for f in ode.findings if f.code == "saturating-hidden-activation").message
    # the plain repeat: 42 weight layers on its path, past the depth (30) where tanh alone stays info;
    # the gradient the probe measures is the fault
    plain = gd.check(ODENet(residual=False), x)
    assert next(f for f in plain.findings if f.code == "saturating-hidden-activation").severity == "warning"
    assert next(f for f in plain.findings if f.code == "vanishing-gradient").severity == "error"


def test_a_model_with_nothing_trainable_gets_one_warning_line():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).requires_grad_(False)
    with pytest.warns(UserWarning, match=r"^graddoctor.check: the model has no trainable parameter"):
        gd.check(net, torch.randn(4, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gd.check(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(4, 8))  # trainable: none


class _NeedsLabels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.head = nn.Embedding(10, 4), nn.Linear(4, 2)

    def forward(self, ids, labels):
        return F.cross_entropy(self.head(self.emb(ids)).mean(1), labels)


def test_forward_errors_name_the_fix():
    """Before: "... missing 1 required positional argument: 'labels' - check the input shape/dtype"."""
    from graddoctor.errors import ModelCallError
    ids = torch.randint(0, 10, (4, 5))
    with pytest.raises(ModelCallError, match=r"a tuple \(x, labels\) in order, or a dict \{'labels': \.\.\.\}$"):
        gd.check(_NeedsLabels(), ids)
    with pytest.raises(ModelCallError, match=r"token ids must be integers: pass a LongTensor \(on the CLI: --dtype long\)$"):
        gd.check(_NeedsLabels(), (ids.float(), torch.zeros(4, dtype=torch.long)))
