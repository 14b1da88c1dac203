"""check's depth trend where no role repeats (one block, shared layers, parallel branches) or roles of
2 straddle stages of different shapes: only layers every backward path passes through (less the
output) make the fallback line, and a role of 2 needs two like layers (same output shape)."""

import torch
import transformers as T
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime.trend import trend_of_logs


def _loud(report):
    return sorted(f.code for f in report.findings if f.severity in ("error", "warning"))


class _Named(nn.Module):
    """A plain sigmoid chain with distinct attribute names (fc1..fcN): no role repeats."""

    def __init__(self, depth=24, width=32):
        super().__init__()
        for i in range(depth):
            setattr(self, f"fc{i + 1}", nn.Linear(16 if i == 0 else width, width))
        self.head, self.depth = nn.Linear(width, 4), depth

    def forward(self, x):
        for i in range(self.depth):
            x = torch.sigmoid(getattr(self, f"fc{i + 1}")(x))
        return self.head(x)


class _TwoBranch(nn.Module):
    """An image branch (conv, global pooling) and a tabular branch into one head: 3 layers."""

    def __init__(self):
        super().__init__()
        self.img = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.tab = nn.Sequential(nn.Linear(5, 16), nn.ReLU())
        self.head = nn.Linear(24, 4)

    def forward(self, image, tabular):
        return self.head(torch.cat([self.img(image), self.tab(tabular)], -1))


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return torch.sigmoid(self.c(torch.sigmoid(self.b(torch.sigmoid(self.a(x))))))


def test_the_fallback_line_skips_side_branches_and_the_head():
    logs = [-7.4, -7.4, -5.4, -3.9, -5.2, -3.9, -2.4, -0.9]  # 1-layer BERT: q, k, v, o, ffn, out, pooler, head
    names = ["q", "k", "v", "o", "ffn", "out", "pooler", "head"]
    assert trend_of_logs(names, logs)["orders"] > 4  # the old fallback: a line through unlike layers
    assert trend_of_logs(names, logs, chain=[False] * 6 + [True, False]) is None
    chain_logs = [-9.0, -8.0, -7.0, -6.0]
    assert trend_of_logs(["a", "b", "c", "d"], chain_logs, chain=[True] * 4)["orders"] == 3.0


def test_a_role_of_two_counts_only_for_two_like_layers():
    names = ["stem", "s.0.q", "s.0.fc", "down", "s.1.q", "s.1.fc", "head"]
    logs = [-3.0, -7.5, -5.2, -2.9, -6.3, -4.1, -0.9]
    assert trend_of_logs(names, logs)["orders"] > 2
    shapes = [(64, 16), (64, 16), (64, 64), (16, 32), (16, 32), (16, 128), (3,)]
    assert trend_of_logs(names, logs, shapes=shapes, chain=[True, False, False, True, False, False, False]) is None
    assert trend_of_logs(names, logs, shapes=[(8,)] * 7)["orders"] > 2  # like layers: the rate stands


def test_one_block_bert_is_silent():
    torch.manual_seed(0)
    cfg = T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                       intermediate_size=64, max_position_embeddings=64)
    ids = torch.randint(1, 100, (4, 12))
    report = gd.check(T.BertForSequenceClassification(cfg), {"input_ids": ids, "labels": torch.randint(0, 2, (4,))})
    assert _loud(report) == []  # was: vanishing-gradient error, "6.1 orders"


def test_albert_shared_layers_are_silent():
    torch.manual_seed(0)
    cfg = T.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=6,
                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    ids = torch.randint(1, 100, (4, 12))
    report = gd.check(T.AlbertForSequenceClassification(cfg), {"input_ids": ids, "labels": torch.randint(0, 2, (4,))})
    assert _loud(report) == []  # was: vanishing-gradient warning/error, 3.9-4.0 orders


def test_two_stage_swin_is_silent():
    torch.manual_seed(0)
    cfg = T.SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 4],
                       window_size=4, num_labels=3)
    report = gd.check(T.SwinForImageClassification(cfg),
                      {"pixel_values": torch.randn(4, 3, 32, 32), "labels": torch.randint(0, 3, (4,))})
    assert _loud(report) == []  # was: vanishing-gradient warning, 2.2 orders


def test_two_branches_into_one_head_are_silent():
    torch.manual_seed(0)
    report = gd.check(_TwoBranch(), {"image": torch.randn(8, 3, 16, 16), "tabular": torch.randn(8, 5)})
    assert _loud(report) == []  # was: vanishing-gradient warning, "1.58 per layer over 3 layers"


def test_a_named_sigmoid_chain_still_vanishes():
    torch.manual_seed(0)
    report = gd.check(_Named(), torch.randn(16, 16), target=torch.randint(0, 4, (16,)))
    f = next(f for f in report.findings if f.code == "vanishing-gradient")
    assert f.severity == "error" and f.evidence["orders_over_depth"] > 10


def test_two_like_sigmoid_blocks_still_vanish():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), *[_Block(32) for _ in range(2)], nn.Linear(32, 4))
    report = gd.check(net, torch.randn(16, 16), target=torch.randint(0, 4, (16,)))
    assert "vanishing-gradient" in _loud(report)
