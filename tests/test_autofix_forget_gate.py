"""The ``forget-bias`` remedy and autofix on a closed LSTM forget gate.

An LSTM whose forget-gate bias starts at -3 keeps 5% of its cell state per step: on a task that
needs the first input 10 steps later it stays at chance (watch: ``vanishing-gradient`` from the
gate, ``diagnose/training/forget_gate.py``). The remedy sets the gate's bias to +1 (Jozefowicz et
al. 2015) and keeps every weight; autofix applies it in place at its first check after the
warm-up, and the run learns like its +1 twin.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd
from graddoctor.fix.planner import plan
from graddoctor.fix.remedies import RemedyContext
from graddoctor.fix.remedies.gate_bias import forget_bias
from graddoctor.report import Finding

T, H = 10, 32


class _Net(nn.Module):
    def __init__(self, bias: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lstm, self.head = nn.LSTM(1, H, batch_first=True), nn.Linear(H, 2)
        with torch.no_grad():
            for name, p in self.lstm.named_parameters():
                if name.startswith("bias"):
                    p[H:2 * H].fill_(bias / 2)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def _data(g, n):
    x = torch.randn(n, T, 1, generator=g)
    return x, (x[:, 0, 0] > 0).long()  # the sign of the first input, 10 steps back


def _train(bias: float, autofix: bool, steps: int = 200):
    g = torch.Generator().manual_seed(0)
    m = _Net(bias)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(m, opt, example_inputs=_data(g, 4)[0], autofix=autofix) as w:
            for _ in range(steps):
                x, y = _data(g, 32)
                loss = nn.functional.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    x, y = _data(g, 1000)
    with torch.no_grad():
        acc = (m(x).argmax(1) == y).float().mean().item()
    return acc, w


def test_forget_bias_sets_the_gate_slices_and_keeps_every_weight():
    for cell in (nn.LSTM(3, 4, num_layers=2, bidirectional=True), nn.GRU(3, 4), nn.LSTMCell(3, 4)):
        before = {n: p.detach().clone() for n, p in cell.named_parameters()}
        new, change = forget_bias(cell, None, RemedyContext("forget-bias", inplace=True))
        assert new is cell and change.kind == "applied" and change.details["value"] == 1.0
        for n, p in cell.named_parameters():
            if n.startswith("bias_ih"):
                assert torch.equal(p[4:8], torch.ones(4)) and torch.equal(p[:4], before[n][:4])
            elif n.startswith("bias_hh"):
                assert torch.equal(p[4:8], torch.zeros(4)) and torch.equal(p[8:], before[n][8:])
            else:
                assert torch.equal(p, before[n])  # weights kept
    assert forget_bias(nn.LSTM(3, 4, bias=False), None, RemedyContext("forget-bias"))[1].kind == "advice"


def test_the_planner_opens_a_closed_gate_instead_of_redrawing_the_lstm():
    gate = Finding("vanishing-gradient", "error", "closed gate", ["lstm"], {"gate_bias": -3.0})
    assert [s.remedy for s in plan([gate], _Net(-3.0), torch.randn(4, T, 1))] == ["forget-bias"]
    profile = Finding("vanishing-gradient", "error", "decay", ["lstm"], {"drop_orders": 5.0})
    assert "orthogonal-init" in [s.remedy for s in plan([profile], _Net(0.0), torch.randn(4, T, 1))]


def test_autofix_opens_a_closed_forget_gate_in_place_and_the_run_learns():
    broken, _ = _train(-3.0, autofix=False)
    twin, _ = _train(1.0, autofix=False)
    fixed, w = _train(-3.0, autofix=True)
    assert broken < 0.6 and twin > 0.9, (broken, twin)
    assert [e["remedies"] for e in w.fixes] == [["forget-bias"]], w.fixes
    assert "gate biases set, weights kept" in w.fixes[0]["message"]
    assert fixed > 0.9, fixed
