"""``loss-plateau`` at chance: a run whose loss ends at ln K, the uniform guess, after starting
above it (a held-out trial: an MLP with dropout 0.9 on MNIST-1D went 2.70 -> 2.30 = ln 10 and
scored chance, 0.098 against 0.575 at dropout 0.1, with no finding). Controls: a run that learns,
a class-imbalanced run that settles at its prior's entropy, two classes, a short run."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.chance import at_chance


def _steps(losses: list[float]) -> list[dict]:
    return [{"step": t + 1, "loss": v} for t, v in enumerate(losses)]


def test_a_loss_that_falls_to_ln_k_and_stays_is_at_chance() -> None:
    losses = [max(2.9 - t / 250, math.log(10)) for t in range(400)]
    (f,) = at_chance({"config": {"output_width": 10}}, _steps(losses))
    assert f.code == "loss-plateau" and f.evidence["path"] == "at chance" and f.step == 301
    assert abs(f.evidence["loss_level"] - math.log(10)) < 1e-3


def test_runs_off_chance_short_or_binary_are_not_flagged() -> None:
    learns = [max(2.9 - t / 100, 0.4) for t in range(400)]
    prior = [1.5] * 400  # an imbalanced task's prior entropy, below ln 10
    chance = [math.log(10)] * 400
    assert at_chance({"config": {"output_width": 10}}, _steps(learns)) == []
    assert at_chance({"config": {"output_width": 10}}, _steps(prior)) == []
    assert at_chance({"config": {"output_width": 10}}, _steps(chance[:150])) == []
    assert at_chance({"config": {"output_width": 2}}, _steps([math.log(2)] * 400)) == []
    assert at_chance({"config": {}}, _steps(chance)) == []
    # a 3-output MSE regression falling from 10 to its noise floor next to ln 3 (a held-out trial)
    mse = [max(10 * 0.97 ** t, 1.10) for t in range(400)]
    assert at_chance({"config": {"output_width": 3}}, _steps(mse)) == []
    # a weak-signal 3-class task whose best loss is 2.2% below ln 3
    assert at_chance({"config": {"output_width": 3}}, _steps([math.log(3) * 0.978] * 400)) == []


def _dropout_run(p: float) -> gd.Report:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 20, generator=g)
    y = x[:, :10].argmax(1)
    torch.manual_seed(0)
    layers, width = [], 20
    for _ in range(3):
        layers += [nn.Linear(width, 128), nn.ReLU(), nn.Dropout(p)]
        width = 128
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with gd.watch(model, opt) as w:
        for _ in range(600):
            idx = torch.randint(0, 512, (64,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return w.report()


def test_heavy_dropout_at_chance_is_named_and_light_dropout_is_not_flagged() -> None:
    heavy = [f for f in _dropout_run(0.9).findings if f.code == "loss-plateau"]
    assert heavy and heavy[0].evidence["path"] == "at chance" and heavy[0].evidence["dropout"] == 0.9
    assert "dropout p=0.9" in heavy[0].message and heavy[0].severity == "warning"
    assert "loss-plateau" not in _dropout_run(0.1).codes
