"""A module applied several times per forward (weights shared along depth): the probe keeps each
call's gradient, so a shared sigmoid block looped 12 times is a vanishing-gradient error (its
summed gradient looked healthy: check said nothing while training sat at chance), while shared
blocks that pass the gradient (a pre-LN layer looped, ALBERT, a triplet encoder, a gated cell)
get nothing; watch's plateau names the reused layer instead of only "suspect the data"."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


class SharedSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp, self.block, self.out = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.inp(x))
        for _ in range(12):
            x = torch.sigmoid(self.block(x))
        return self.out(x)


class Looped(nn.Module):
    def __init__(self, norm_first: bool = True) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=norm_first, dropout=0.0)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(8):
            x = self.layer(x)
        return self.head(x.mean(1))


class Triplet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))

    def forward(self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        return (self.enc(a) - self.enc(p)).pow(2).sum(1) - (self.enc(a) - self.enc(n)).pow(2).sum(1)


class CellLoop(nn.Module):
    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell, self.out = cell, nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = None
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        return self.out(h if isinstance(h, torch.Tensor) else h[0])


def test_a_shared_sigmoid_block_looped_is_a_vanishing_error_on_that_block():
    torch.manual_seed(0)
    report = gd.check(SharedSigmoid(), torch.randn(32, 64), target=torch.randint(0, 10, (32,)))
    [f] = [f for f in report.findings if f.code == "vanishing-gradient"]
    assert f.severity == "error" and f.layers == ["block", "inp"] and f.evidence["calls"] == 12
    assert f.evidence["starved_layers"] == ["inp"]  # what feeds the loop gets as little
    assert f.evidence["orders_over_calls"] > 4


@pytest.mark.parametrize("build, x", [
    (lambda: Looped(True), torch.randn(8, 10, 32)),
    (lambda: Looped(False), torch.randn(8, 10, 32)),
    (lambda: CellLoop(nn.LSTMCell(8, 32)), torch.randn(8, 100, 8)),
    (lambda: CellLoop(nn.GRUCell(8, 32)), torch.randn(8, 100, 8)),
], ids=["pre-ln-looped", "post-ln-looped", "lstm-cell", "gru-cell"])
def test_shared_blocks_that_pass_the_gradient_get_nothing(build, x):
    torch.manual_seed(0)
    report = gd.check(build(), x, target=torch.randint(0, 4, (8,)))
    assert not [f for f in report.findings if f.severity != "info"], report.findings


def test_a_triplet_encoder_gets_nothing():
    torch.manual_seed(0)
    report = gd.check(Triplet(), (torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 16)))
    assert not [f for f in report.findings if f.severity != "info"], report.findings


def test_albert_sharing_one_layer_twelve_times_gets_nothing():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.AlbertConfig(vocab_size=100, embedding_size=32, hidden_size=64, num_hidden_layers=12,
                                    num_attention_heads=4, intermediate_size=128, max_position_embeddings=32)
    ids = torch.randint(0, 100, (8, 16))
    report = gd.check(transformers.AlbertForMaskedLM(cfg), {"input_ids": ids, "labels": ids})
    assert not [f for f in report.findings if f.severity != "info"], report.findings


def test_a_vanilla_rnn_cell_stepped_in_python_gets_the_lstm_remedies():
    torch.manual_seed(0)
    report = gd.check(CellLoop(nn.RNNCell(8, 32)), torch.randn(8, 100, 8), target=torch.randint(0, 4, (8,)))
    [f] = [f for f in report.findings if f.code == "vanishing-gradient"]
    assert f.layers == ["cell"] and f.remedies[0] == "lstm"


def test_watch_plateau_on_a_reused_block_names_it():
    torch.manual_seed(0)
    model = SharedSigmoid()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(64, 64), torch.randint(0, 10, (64,))
    with gd.watch(model, opt, example_inputs=x[:8]) as w:
        for _ in range(80):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    assert w.records()[0]["layers"][1]["calls"] == 12
    plateau = [f for f in w.report().findings if f.code == "loss-plateau"]
    assert plateau and "'block' is applied 12 times per forward" in plateau[0].message


class FixedPoint(nn.Module):
    """A DEQ-style loop z = tanh(W z + U x), 30 times: the input reaches every call."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.W, self.U, self.head = nn.Linear(16, 32), nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(32, 4)
        with torch.no_grad():
            self.W.weight.mul_(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.U(torch.relu(self.inp(x)))
        z = torch.zeros_like(u)
        for _ in range(30):
            z = torch.tanh(self.W(z) + u)
        return self.head(z)


class ProjectedCell(nn.Module):
    """A per-step input projection feeding an nn.LSTMCell stepped in Python."""

    def __init__(self) -> None:
        super().__init__()
        self.proj, self.cell, self.head = nn.Linear(8, 32), nn.LSTMCell(32, 32), nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], 32)
        for t in range(x.shape[1]):
            h, c = self.cell(torch.relu(self.proj(x[:, t])), (h, c))
        return self.head(h)


def test_a_fixed_point_loop_and_a_projected_gated_cell_get_nothing():
    torch.manual_seed(0)
    deq = gd.check(FixedPoint(), torch.randn(16, 16), target=torch.randint(0, 4, (16,)))
    assert not [f for f in deq.findings if f.severity != "info"], deq.findings
    cell = gd.check(ProjectedCell(), torch.randn(8, 50, 8), target=torch.randint(0, 2, (8,)))
    assert not [f for f in cell.findings if f.severity != "info"], cell.findings


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_albert_classifier_is_no_recurrence_through_time(seed):
    """ALBERT's shared layer takes the whole sequence per call: no time axis to judge (its
    first-token pooling read as a gradient exploding through time in 5 of 8 held-out runs)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=32, num_hidden_layers=12,
                                    num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(seed)
    report = gd.check(transformers.AlbertForSequenceClassification(cfg), {"input_ids": torch.randint(0, 100, (4, 16))})
    assert not [f for f in report.findings if f.severity != "info"], report.findings
