"""Random architectures for the property-based tests (``tests/test_property.py``) and the
longer run in ``benchmarks/property.py``: MLPs of depth 1-60 and widths 1-128 with plain and
in-place activations (modules and functional), BatchNorm/LayerNorm, dropout, residual blocks,
init scales 1e-3..1e2 and dtypes float32/float64/bfloat16."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

import graddoctor as gd

ACTIVATIONS = ("relu", "relu_", "tanh", "sigmoid", "gelu", "leaky_relu_", "elu", "silu", "F.relu", "F.tanh")
NORMS = (None, "batchnorm", "layernorm")
DTYPES = (torch.float32, torch.float64, torch.bfloat16)


@dataclass(frozen=True)
class Arch:
    depth: int
    widths: tuple[int, ...]
    activation: str
    norm: str | None
    dropout: float
    residual: bool
    scale: float
    dtype: torch.dtype
    batch: int


class _Functional(nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.fn = {"F.relu": F.relu, "F.tanh": torch.tanh}[name]

    def forward(self, x):
        return self.fn(x)


class _Block(nn.Module):
    """``x + body(x)`` when ``residual`` and the widths match, else ``body(x)``."""

    def __init__(self, body: nn.Module, residual: bool) -> None:
        super().__init__()
        self.body, self.residual = body, residual

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual and y.shape == x.shape else y


def _activation(name: str) -> nn.Module:
    if name.startswith("F."):
        return _Functional(name)
    return {"relu": lambda: nn.ReLU(), "relu_": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh,
            "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "leaky_relu_": lambda: nn.LeakyReLU(0.1, inplace=True),
            "elu": nn.ELU, "silu": nn.SiLU}[name]()


def build(a: Arch) -> nn.Sequential:
    """The model of ``a`` (weights drawn from the current RNG, then scaled by ``a.scale``)."""
    layers: list[nn.Module] = []
    for i in range(a.depth):
        w_in, w_out = a.widths[i], a.widths[i + 1]
        body: list[nn.Module] = [nn.Linear(w_in, w_out)]
        if a.norm == "batchnorm":
            body.append(nn.BatchNorm1d(w_out))
        elif a.norm == "layernorm":
            body.append(nn.LayerNorm(w_out))
        body.append(_activation(a.activation))
        if a.dropout:
            body.append(nn.Dropout(a.dropout))
        layers.append(_Block(nn.Sequential(*body), a.residual))
    layers.append(nn.Linear(a.widths[-1], 1))
    net = nn.Sequential(*layers)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(a.scale)
    return net.to(a.dtype)


@st.composite
def archs(draw: st.DrawFn, max_units: int = 600) -> Arch:
    """An architecture; depth x width is kept under ``max_units`` so an example stays fast.
    Depth is drawn from 1-12 or from 13-60 with equal odds: every depth in 1-60 is reached,
    deep nets in half the examples, and the shallow half keeps the count affordable."""
    depth = draw(st.one_of(st.integers(1, 12), st.integers(13, 60)))
    top = max(1, min(128, max_units // depth))
    widths = tuple(draw(st.lists(st.integers(1, top), min_size=depth + 1, max_size=depth + 1)))
    if draw(st.booleans()):  # a constant width (residual blocks add up)
        widths = (widths[0],) * (depth + 1)
    return Arch(depth, widths, draw(st.sampled_from(ACTIVATIONS)), draw(st.sampled_from(NORMS)),
                draw(st.sampled_from((0.0, 0.1))), draw(st.booleans()),
                10 ** draw(st.floats(-3, 2)), draw(st.sampled_from(DTYPES)), draw(st.integers(2, 8)))


def hooks(model: nn.Module) -> int:
    """Hooks on the model's modules (torch's own registries)."""
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


def state(model: nn.Module) -> tuple:
    """What must come back unchanged: parameters and buffers, modes, grads, the RNG."""
    return ({k: v.clone() for k, v in model.state_dict().items()}, [m.training for m in model.modules()],
            [p.grad for p in model.parameters()], torch.get_rng_state())


def same(a: tuple, b: tuple) -> bool:
    sa, ma, ga, ra = a
    sb, mb, gb, rb = b
    return (sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) or (sa[k].isnan().all() and sb[k].isnan().all())
                                            for k in sa)
            and ma == mb and all(x is y for x, y in zip(ga, gb)) and torch.equal(ra, rb))


def run_all(a: Arch, seed: int = 0) -> dict:
    """check, watch (5 steps) and repair on the model of ``a``; asserts that nothing raises and
    nothing is left behind. Returns what was seen (codes, remedies)."""
    torch.manual_seed(seed)
    net = build(a)
    x = torch.randn(a.batch, a.widths[0], dtype=a.dtype)
    x0 = x.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's own warnings (e.g. non-finite values) are allowed
        before = state(net)
        report = gd.check(net, x)
        assert same(before, state(net)), "check changed the model, its grads, modes or the RNG"
        assert hooks(net) == 0 and torch.equal(x, x0)

        trained = copy.deepcopy(net)
        opt = torch.optim.SGD(trained.parameters(), lr=1e-3)
        with gd.watch(trained, opt, activation_every=2, output_grads=True, flush_every=2,
                      update_every=2, weight_every=2) as w:
            for _ in range(5):
                loss = trained(x).float().pow(2).mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                w.step(loss)
        assert w.failed is None, f"watch stopped recording: {w.failed}"
        assert hooks(trained) == 0 and len(opt._optimizer_step_pre_hooks) == 0
        assert [s["step"] for s in w.records()[1]] == [1, 2, 3, 4, 5]
        w.report()

        before = state(net)
        result = gd.repair(net, report, example_inputs=x, seed=0)
        assert same(before, state(net)), "repair changed the input model or the RNG"
        out = result.model(x)
        assert out.shape == (a.batch, 1) and out.dtype == a.dtype
        assert hooks(net) == 0 and torch.equal(x, x0)
    return {"codes": sorted(report.codes), "remedies": [c.remedy for c in result.changes]}
