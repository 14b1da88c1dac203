"""Watch's ``softmax-before-loss``: a model ending in ``nn.Softmax`` whose loss stays in the range
of cross-entropy fed probabilities, [ln(e + C - 1) - 1, ln(e + C - 1)], for the whole run (a
held-out trial's double-softmax MLP: 19 points lost, no finding). Controls: the same net on logits,
on log-softmax + NLLLoss, and softmax + NLLLoss on log(p), all of which leave the range."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def _run(head: str, steps: int = 240) -> gd.Report:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=g)
    y = (x[:, :5].argmax(1) + 5 * (x[:, 5] > 0).long())  # 10 learnable classes
    torch.manual_seed(0)
    last = {"softmax": [nn.Softmax(dim=1)], "log_softmax": [nn.LogSoftmax(dim=1)], "logits": [],
            "softmax_log_nll": [nn.Softmax(dim=1)]}[head]
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10), *last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with gd.watch(model, opt) as w:
        for _ in range(steps):
            idx = torch.randint(0, 512, (64,), generator=g)
            out = model(x[idx])
            loss = (F.nll_loss(out, y[idx]) if head == "log_softmax" else
                    F.nll_loss(torch.log(out + 1e-9), y[idx]) if head == "softmax_log_nll" else F.cross_entropy(out, y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return w.report()


def test_softmax_into_cross_entropy_is_found_from_the_loss_range() -> None:
    (f,) = [f for f in _run("softmax").findings if f.code == "softmax-before-loss"]
    assert f.severity == "info" and f.layers == ["3"]  # (watch does not see the loss: check tells)
    assert f.evidence["loss_floor"] == pytest.approx(math.log(math.e + 9) - 1, abs=1e-4)
    assert f.evidence["loss_min"] >= f.evidence["loss_floor"]


@pytest.mark.parametrize("head", ["logits", "log_softmax", "softmax_log_nll"])
def test_losses_that_leave_the_range_are_not_flagged(head: str) -> None:
    assert "softmax-before-loss" not in _run(head).codes


def test_a_short_run_is_not_judged() -> None:
    assert "softmax-before-loss" not in _run("softmax", steps=120).codes
