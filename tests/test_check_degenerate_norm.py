"""check's degenerate-norm (diagnose/checktime/degenerate_norms.py): a norm with one or two values
per group passes nothing, and the norm-groups remedy. Models that must trigger it (a stock
Hugging Face BiT built small: GroupNorm(8, 8) on a 1x1 map; a GroupNorm after global pooling;
LayerNorm(1)) and controls that must not (GroupNorm with enough values, BatchNorm at batch 1
in eval mode, a zero gain, which is poor-init's, a ResNet-style GroupNorm net)."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime.degenerate_norms import degenerate_norms
from graddoctor.fix.remedies.norm_groups import MIN_VALUES, fewer_groups
from graddoctor.measure.norm_scale import input_sensitivity
from graddoctor.modelmap import ModelMap


def _codes(model, x):
    return [f.code for f in degenerate_norms(ModelMap(model, x), model)]


def _gn_head(groups: int, channels: int = 16) -> nn.Module:
    """Conv features, global pooling, then a GroupNorm on the pooled (B, C, 1, 1) map."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.GroupNorm(groups, channels), nn.ReLU(), nn.Flatten(), nn.Linear(channels, 4))


def test_input_sensitivity_against_autograd_oracle():
    # one value per group normalises to 0, two to +-1: no gradient passes; a wide LayerNorm passes ~1
    gn = nn.GroupNorm(4, 8)
    x = torch.randn(4, 8, 1, 1, requires_grad=True)
    (g,) = torch.autograd.grad(gn(x).sum(), x)
    assert g.abs().max() < 1e-3  # the plain-autograd oracle: two values per group, a zero Jacobian
    assert input_sensitivity(gn, (4, 8, 1, 1)) < 1e-3
    assert input_sensitivity(nn.GroupNorm(8, 8), (4, 8, 1, 1)) < 1e-3
    assert input_sensitivity(nn.LayerNorm(64), (4, 64)) > 0.9
    assert input_sensitivity(nn.GroupNorm(2, 8), (4, 8, 1, 1)) > 0.5  # four values: it passes


def test_groupnorm_after_global_pooling_is_found_and_repaired():
    model, x = _gn_head(16), torch.randn(8, 3, 8, 8)
    report = gd.check(model, x)
    (f,) = [f for f in report.findings if f.code == "degenerate-norm"]
    assert f.layers == ["3"] and f.evidence["per_layer"]["3"]["values"] == 1 and f.remedies == ["norm-groups"]
    res = gd.repair(model, report, x)
    assert [c.remedy for c in res.changes] == ["norm-groups"]
    assert res.model[3].num_groups == fewer_groups(16, 1, 16) == 2 and model[3].num_groups == 16
    assert 16 // res.model[3].num_groups >= MIN_VALUES
    assert "degenerate-norm" not in gd.check(res.model, x).codes
    # the repaired head passes a gradient to the convolution; the broken one passes none
    for net, alive in ((model, False), (res.model, True)):
        net.zero_grad()
        nn.functional.cross_entropy(net(x), torch.arange(8) % 4).backward()
        assert bool(net[0].weight.grad.abs().max() > 1e-4) is alive


def test_layernorm_over_one_value_is_found_without_a_remedy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 1), nn.LayerNorm(1), nn.Linear(1, 2))
    (f,) = degenerate_norms(ModelMap(model, torch.randn(8, 4)), model)
    assert f.layers == ["1"] and f.remedies == [] and "normalized_shape" in f.message


def test_controls_are_not_flagged():
    x = torch.randn(8, 3, 8, 8)
    assert _codes(_gn_head(4), x) == []  # four channels per group on 1x1: four values
    torch.manual_seed(0)
    resnetish = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(32, 32), nn.ReLU(),
                              nn.Conv2d(32, 32, 3, padding=1), nn.GroupNorm(8, 32), nn.ReLU())
    assert _codes(resnetish, x) == []  # one channel per group, but 8x8 positions: 64 values
    bn = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()  # running statistics
    assert _codes(bn, torch.randn(1, 3, 3, 3)) == []
    zero = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    nn.init.zeros_(zero[1].weight)  # a zero gain passes nothing either: poor-init / norm-gain's finding
    assert _codes(zero, torch.randn(4, 4)) == []


def test_stock_bit_built_small_gets_norm_groups_not_a_he_redraw():
    from transformers import BitConfig, BitForImageClassification

    torch.manual_seed(0)
    model = BitForImageClassification(BitConfig(embedding_size=16, hidden_sizes=[16, 32, 32, 32], depths=[1, 1, 1, 1],
                                                num_groups=8, num_labels=4))
    x = {"pixel_values": torch.randn(16, 3, 32, 32), "labels": torch.randint(0, 4, (16,))}
    report = gd.check(model, x)
    (f,) = [f for f in report.findings if f.code == "degenerate-norm"]
    assert f.layers == ["bit.encoder.stages.3.layers.0.norm3"] and f.evidence["per_layer"][f.layers[0]]["values"] == 1
    # the exploding-gradient / signal-collapse readings of the dead branch ask for no He re-draw
    res = gd.repair(model, report, x)
    assert [c.remedy for c in res.changes] == ["norm-groups"]
    after = gd.check(res.model, x)
    assert not {"degenerate-norm", "exploding-gradient", "signal-collapse"} & set(after.codes), after.codes


def test_norm_groups_survives_keep_architecture_and_a_layernorm_gets_no_empty_step():
    from graddoctor.fix.keep_architecture import keep_architecture_plan
    from graddoctor.fix.planner import plan

    model, x = _gn_head(16), torch.randn(8, 3, 8, 8)
    steps = plan(gd.check(model, x), model, x)
    assert [s.remedy for s in steps] == ["norm-groups"]
    assert [s.remedy for s in keep_architecture_plan(steps, model, x)] == ["norm-groups"]  # no architecture change
    torch.manual_seed(0)
    ln = nn.Sequential(nn.Linear(4, 1), nn.LayerNorm(1), nn.Linear(1, 2))
    x = torch.randn(8, 4)
    assert "norm-groups" not in [s.remedy for s in plan(gd.check(ln, x), ln, x)]
