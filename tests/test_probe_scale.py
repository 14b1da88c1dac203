"""The probe's rescaled backward: a float32 gradient that underflows is measured as mantissa x 2^e.

Oracle: the same model in float64 (whose range holds the whole profile at these depths) with
plain autograd; the float32 probe must agree with it in log10 where float32 alone reads zero.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor import zoo
from graddoctor.measure.probe import probe
from graddoctor.measure.probe_scale import LogSquares, cut_nodes

FLOAT32_FLOOR_LOG10 = math.log10(2.0 ** -149)


def _target_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out * y).sum()


def _float64_oracle(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """log10 RMS of dL/d(Linear output) for each Linear, plain autograd in float64."""
    net = net.double()
    outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _a, o: outs.append(o)) for m in net.modules()
             if isinstance(m, nn.Linear)]
    try:
        loss = _target_loss(net(x.double()), y.double())
        grads = torch.autograd.grad(loss, outs)
    finally:
        for h in hooks:
            h.remove()
    return [math.log10(float(g.pow(2).mean().sqrt())) for g in grads]


def test_float32_probe_measures_below_float32_range_like_the_float64_oracle() -> None:
    net = zoo.mlp(depth=150, width=16, activation="sigmoid", seed=0)
    x, y = torch.randn(8, 64), torch.randn(8, 10)
    p = probe(net, x, target=y, loss_fn=_target_loss, jacobian_k=0)
    # plain float32 autograd underflows: its input-side gradient is exactly zero
    h = net[0](x)
    h.retain_grad()
    out = h
    for m in list(net)[1:]:
        out = m(out)
    _target_loss(out, y).backward()
    assert float(h.grad.abs().max()) == 0.0
    oracle = _float64_oracle(net, x, y)
    assert min(oracle) < FLOAT32_FLOOR_LOG10 - 20  # the profile really goes below float32's range
    assert p.grad_rescale_log2 > 0 and p.grad_dtype == "float32" and len(p.grad_log10) == 150
    for got, want in zip(p.grad_log10, oracle):
        assert got == pytest.approx(want, abs=0.02)
    assert p.grad_rms[0] == pytest.approx(10.0 ** oracle[0], rel=0.05)  # in float64's range: the value


def test_a_branch_with_a_skip_around_it_is_never_rescaled() -> None:
    """Inside a residual branch a rescaled gradient would be summed with the skip's unscaled one:
    the probe rescales at cuts only, so a deep sigmoid branch keeps its exact zeros."""

    class SkipAroundDeepBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(16, 16)
            self.branch = zoo.mlp(depth=120, width=16, in_features=16, out_features=16,
                                  activation="sigmoid", seed=1)
            self.head = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.stem(x)
            return self.head(h + self.branch(h))

    torch.manual_seed(0)
    p = probe(SkipAroundDeepBranch(), torch.randn(8, 16), jacobian_k=0)
    assert p.grad_rescale_log2 == 0
    assert min(p.grad_rms) == 0.0  # the branch's input side underflowed and stays an exact zero
    stem = p.layers.index("stem")
    assert p.grad_rms[stem] > 1e-3  # the skip carries the gradient to the stem


def test_cut_nodes_of_a_chain_and_of_a_residual_block() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    a = torch.tanh(x @ torch.randn(4, 4))
    b = torch.tanh(a @ torch.randn(4, 4))
    out = (b + a).sum()  # a skip from a to the output: b is not a cut, a is
    cuts = cut_nodes(out.grad_fn)
    assert a.grad_fn in cuts and b.grad_fn not in cuts
    inner = torch.tanh(x)
    chain = torch.tanh(inner).sum()
    assert inner.grad_fn in cut_nodes(chain.grad_fn)


def test_log_squares_adds_values_far_apart_and_keeps_zero_and_non_finite() -> None:
    s = LogSquares()
    s.add(1.0, 2, 0)
    s.add(1.0, 2, 5000)  # 2^-10000: nothing next to 1
    assert s.log10_rms() == pytest.approx(math.log10(math.sqrt(1 / 4)))
    z = LogSquares()
    z.add(0.0, 3, 0)
    assert z.log10_rms() == -math.inf
    bad = LogSquares()
    bad.add(float("nan"), 1, 0)
    assert bad.log10_rms() == math.inf
