"""A dead path under weights of norm < 1: a zero gradient reads log10(0 / |w|) = -30 - log10 |w|
on the relative profile, above the -30 floor, and was taken for a live (tiny) gradient - a head
above a flat body, dropped (trial: zeroed LayerNorm gains, weights at BERT's std 0.02: no
finding; the same model at std 0.5 was an error)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd


def _zeroed_gains_run(std: float) -> list:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(16):
        layers += [nn.Linear(32, 32), nn.GELU(), nn.LayerNorm(32)]
    model = nn.Sequential(*layers, nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.weight)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(512, 32)
    y = (x[:, 0] > 0).long()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, opt) as w:
            for i in range(40):
                xb, yb = x[i % 8 * 64:(i % 8 + 1) * 64], y[i % 8 * 64:(i % 8 + 1) * 64]
                loss = nn.functional.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    return w.report().findings


@pytest.mark.parametrize("std", [0.02, 0.5])
def test_a_dead_path_is_an_error_whatever_the_weight_norms(std):
    (f,) = [f for f in _zeroed_gains_run(std) if f.code == "vanishing-gradient"]
    assert f.severity == "error" and "get exactly zero gradient" in f.message
    assert f.evidence["zero_gradient_layers"] >= 16


@pytest.mark.parametrize("g, said", [(0.0, "get exactly zero gradient (a dead path)"),
                                     (1e-18, "get gradients under 10^-15 of their weights' size")])
def test_a_tiny_gradient_is_not_called_exactly_zero(g, said):
    """A 20-layer sigmoid stack's input side reads 1e-18 (0% zeros in the tensors): that is
    vanishing, not the dead path of a ``.detach()`` or a zeroed gain."""
    from graddoctor.diagnose.training.gradients import vanishing_gradient

    meta = {"layers": [{"name": f"l{i}", "kind": "linear", "trainable": True} for i in range(9)]}
    steps = [{"step": t, "grad_norm": {f"l{i}": g if i < 3 else 0.1 for i in range(9)},
              "weight_norm": {f"l{i}": 1.0 for i in range(9)}} for t in range(1, 21)]
    (f,) = vanishing_gradient(meta, steps)
    assert said in f.message and f.evidence["zero_gradient_layers"] == 3
