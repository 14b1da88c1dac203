"""Activations called in ``forward`` (``torch.sigmoid(layer(x))``) cannot be swapped by module
surgery: the swap is a manual code change, and the re-init is for the activation that stays (a He
re-draw for a ReLU that never comes left 15 sigmoid layers at chance: 0.10 against 0.95 with the
edge-of-chaos init, digits, Adam 1e-3, 250 steps)."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from test_autofix_stale import SigmoidCalls  # 15 Linear layers, torch.sigmoid called in forward


def test_functional_sigmoids_get_an_init_for_sigmoid_and_the_swap_as_a_code_change():
    torch.manual_seed(0)
    model, x, y = SigmoidCalls(), torch.randn(32, 64), torch.randint(0, 10, (32,))
    report = gd.check(model, x, target=y)
    assert "vanishing-gradient" in report.codes
    result = gd.repair(model, report, example_inputs=x)
    kinds = {c.remedy: c.kind for c in result.changes}
    assert kinds.get("relu") == "manual" and "he-init" not in kinds
    assert kinds.get("edge-of-chaos-init") == "applied"
    after = gd.check(result.model, x, target=y)
    assert not [f for f in after.findings if f.code == "vanishing-gradient"], after.findings


def test_module_sigmoids_are_still_swapped_and_he_initialised():
    torch.manual_seed(0)
    layers = [m for _ in range(15) for m in (nn.Linear(64, 64), nn.Sigmoid())]
    model, x = nn.Sequential(*layers, nn.Linear(64, 10)), torch.randn(32, 64)
    result = gd.repair(model, gd.check(model, x, target=torch.randint(0, 10, (32,))), example_inputs=x)
    kinds = {c.remedy: c.kind for c in result.changes}
    assert kinds.get("relu") == "applied" and kinds.get("he-init") == "applied"
