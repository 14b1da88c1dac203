"""A frozen backbone (requires_grad=False) under a trainable head is the user's to keep: check
makes a finding about frozen layers only info (a gradient vanishing through layers that do not
train holds nothing back), and repair neither swaps the backbone's activations nor wraps its
blocks in new trainable gains (a held-out trial saw all 15 sigmoids swapped and ReZero gains
added inside a frozen backbone)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


class FrozenBackbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(*[m for _ in range(15) for m in (nn.Linear(64, 64), nn.Sigmoid())])
        self.backbone.requires_grad_(False)
        self.head = nn.Sequential(nn.Linear(64, 32), nn.Sigmoid(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_a_frozen_backbone_is_kept_and_its_vanishing_gradient_is_info():
    torch.manual_seed(0)
    model, x, y = FrozenBackbone(), torch.randn(32, 64), torch.randint(0, 10, (32,))
    with torch.no_grad():
        features = model.backbone(x)
    report = gd.check(model, x, target=y)
    vanishing = [f for f in report.findings if f.code == "vanishing-gradient"]
    assert vanishing and all(f.severity == "info" and "frozen" in f.message for f in vanishing)
    result = gd.repair(model, report, example_inputs=x)
    assert [type(m).__name__ for m in result.model.backbone] == [type(m).__name__ for m in model.backbone]
    assert not [n for n, p in result.model.backbone.named_parameters() if p.requires_grad]
    with torch.no_grad():
        assert torch.equal(result.model.backbone(x), features)


def test_the_same_net_trainable_is_still_an_error_and_repaired_whole():
    torch.manual_seed(0)
    model, x, y = FrozenBackbone().requires_grad_(True), torch.randn(32, 64), torch.randint(0, 10, (32,))
    report = gd.check(model, x, target=y)
    assert any(f.code == "vanishing-gradient" and f.severity == "error" for f in report.findings)
    result = gd.repair(model, report, example_inputs=x)
    assert not any(isinstance(m, nn.Sigmoid) for m in result.model.backbone.modules())


def test_explicit_rezero_skips_a_frozen_chain():
    torch.manual_seed(0)
    model, x = FrozenBackbone(), torch.randn(8, 64)
    result = gd.repair(model, None, remedies=["rezero"], example_inputs=x)
    assert not any(n.endswith("alpha") for n, _ in result.model.backbone.named_parameters())


def test_edge_of_chaos_keeps_frozen_layers_of_a_partly_frozen_chain():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 4))
    for m in list(net)[:6]:
        m.requires_grad_(False)
    before = {n: p.clone() for n, p in net.named_parameters() if not p.requires_grad}
    result = gd.repair(net, None, remedies=["edge-of-chaos-init"], example_inputs=torch.randn(16, 32))
    after = dict(result.model.named_parameters())
    assert before and all(torch.equal(before[n], after[n]) for n in before)
    assert not any(n.startswith(("0.", "2.", "4.")) for n in result.changes[0].modules)


def test_a_frozen_bert_drawn_large_gets_only_info_about_its_attention():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=64, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=128, max_position_embeddings=32, initializer_range=1.0)
    model = transformers.BertForSequenceClassification(cfg)
    model.bert.requires_grad_(False)
    ids = torch.randint(0, 64, (4, 16))
    report = gd.check(model, {"input_ids": ids, "labels": torch.randint(0, 2, (4,))})
    assert all(f.severity == "info" for f in report.findings if f.code == "poor-init"), report.findings
