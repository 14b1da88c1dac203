"""repair: a ReLU layer whose bias kills every unit (a dead path at init) gets its weights re-drawn.

check reported the exactly-zero gradients as a vanishing-gradient error with he-init first among
its remedies; repair planned nothing ("nothing to do") and the bias stayed at -10.
"""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


def _dead_mlp() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(3):
        lin = nn.Linear(32, 32)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(32, 10))
    nn.init.constant_(net[2].bias, -10.0)
    return net


def test_dead_path_is_re_drawn_and_the_re_check_is_clean() -> None:
    net, x, y = _dead_mlp(), torch.randn(64, 32), torch.randint(0, 10, (64,))
    report = gd.check(net, x, target=y)
    vanish = next(f for f in report.findings if f.code == "vanishing-gradient")
    assert vanish.evidence["zero_gradient_input_side"] > 0
    result = gd.repair(net, report, example_inputs=x)
    drawn = next(c for c in result.changes if c.kind == "applied" and c.remedy == "he-init")
    assert drawn.modules == ["0", "2", "4"]  # the dead path only: the head keeps its weights
    assert float(result.model[2].bias.abs().max()) < 1.0
    assert "vanishing-gradient" not in {f.code for f in gd.check(result.model, x, target=y).findings}


def test_healthy_relu_mlp_plans_nothing() -> None:
    net = _dead_mlp()
    nn.init.zeros_(net[2].bias)
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    result = gd.repair(net, gd.check(net, x, target=y), example_inputs=x)
    assert not [c for c in result.changes if c.kind == "applied"]


def test_a_trained_checkpoint_with_a_dead_layer_is_not_re_drawn() -> None:
    """A checkpoint (a rank-1 spike in every weight: ``looks_trained``) keeps its weights."""
    net = _dead_mlp()
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                u, v = torch.randn(m.weight.shape[0], 1), torch.randn(1, m.weight.shape[1])
                m.weight += 0.5 * u @ v / m.weight.shape[1] ** 0.5
    before = net[0].weight.detach().clone()
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    result = gd.repair(net, gd.check(net, x, target=y), example_inputs=x)
    assert "he-init" not in [c.remedy for c in result.changes if c.kind == "applied"]
    assert torch.equal(result.model[0].weight, before)
