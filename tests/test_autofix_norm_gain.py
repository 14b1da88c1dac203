"""Autofix puts zeroed normalisation gains back to 1 when the body is dead behind them.

A trial: a SegFormer with every LayerNorm gain zeroed was a vanishing-gradient error (a dead body)
from step 1, its gains still exactly 0 at the step-40 check, and autofix said "nothing applicable
in place" although ``check`` and ``repair`` knew ``norm-gain``. Here a LayerNorm MLP with its gains
zeroed and zero body biases: behind the first zero gain every input is 0 (as in the SegFormer,
whose first LayerNorm feeds the rest), so no gain moves; autofix applies norm-gain alone and the
run learns.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd
from test_autofix import _loop


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, 32)]
    for _ in range(5):
        layers += [nn.LayerNorm(32), nn.Linear(32, 32), nn.ReLU()]
    net = nn.Sequential(*layers, nn.LayerNorm(32), nn.Linear(32, 10))
    for m in net.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.weight)
    for m in list(net)[1:-1]:  # zero biases in the body: behind the first zero gain every input is 0,
        if isinstance(m, nn.Linear):  # so no gain's gradient (dL/dy * x_hat, x_hat = 0) moves it
            nn.init.zeros_(m.bias)
    return net


def test_zeroed_layernorm_gains_are_set_back_to_one_and_nothing_else_moves():
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = gd.watch(net, opt, autofix=True)
        losses = _loop(net, opt, 120, w)
        w.detach()
    fixes = [e for e in w.fixes if e["remedies"]]
    assert fixes and fixes[0]["remedies"] == ["norm-gain"], [(e["step"], e["message"]) for e in w.fixes]
    assert "zero norm gains set to 1, weights kept" in fixes[0]["message"]
    assert all(m.weight.abs().min() > 0 for m in net if isinstance(m, nn.LayerNorm))
    assert losses[-1] < 0.8 * losses[0]
