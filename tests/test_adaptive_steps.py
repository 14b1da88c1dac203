"""The adaptive-optimizer path of exploding-gradient (``diagnose/training/adaptive_steps.py``):
Adam's first steps far past the weights' scale on a run whose loss is slow."""

from __future__ import annotations

import copy
import statistics

import pytest
import torch

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.adaptive_steps import FIRST_STEP_TOO_BIG, adaptive_steps_too_big
from graddoctor.diagnose.training.postln import first_step_size
from test_rules import _train


@pytest.fixture(scope="module")
def digits():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    b = data.load("digits", seed=0)
    yield b.x_train[:640].float(), b.y_train[:640]
    torch.set_num_threads(n)


def _run(digits, lr, steps=60):
    torch.manual_seed(0)
    net = zoo.mlp(depth=6, width=64, in_features=64, activation="relu", init="he")
    return _train(net, *digits, torch.optim.Adam(net.parameters(), lr=lr), steps)


def _adaptive(findings):
    return [f for f in findings if f.code == "exploding-gradient" and "lr_divisor" in f.evidence]


def test_first_step_is_the_weights_relative_move(digits):
    """Oracle: the same first Adam step taken by hand on a copy; the rule reads the median over the
    body (every Linear but the head) of ||w_1 - w_0|| / ||w_0||, about lr / rms(w) (exactly, where
    no gradient entry is zero)."""
    x, y = digits
    torch.manual_seed(0)
    net = zoo.mlp(depth=6, width=64, in_features=64, activation="relu", init="he")
    twin = copy.deepcopy(net)
    opt = torch.optim.Adam(twin.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(twin(x[:32]), y[:32]).backward()
    before = [m.weight.detach().clone() for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    opt.step()
    after = [m.weight.detach() for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    oracle = statistics.median(float((a - b).norm() / b.norm()) for a, b in zip(after[:-1], before[:-1]))
    meta, steps = _train(net, x, y, torch.optim.Adam(net.parameters(), lr=0.1), 1)
    assert first_step_size(meta, steps) == pytest.approx(oracle, rel=0.02)


def test_hot_adam_with_a_slow_loss_is_an_error(digits):
    meta, steps = _run(digits, 0.1)  # first step 0.49 of the weights; loss at 0.62 of its start
    found = _adaptive(training_findings(meta, steps))
    assert len(found) == 1 and found[0].severity == "error"
    ev = found[0].evidence
    assert ev["first_update_ratio"] >= FIRST_STEP_TOO_BIG and ev["lr_divisor"] > 3
    assert "lower-lr" in found[0].remedies


def test_usual_rate_is_silent(digits):
    meta, steps = _run(digits, 1e-3)  # steps of 0.5% of the weights
    assert not _adaptive(training_findings(meta, steps))


def test_hot_rate_that_learns_is_silent(digits):
    meta, steps = _run(digits, 0.05)  # first step 0.25 of the weights, loss at 0.36 of its start
    assert first_step_size(meta, steps) >= FIRST_STEP_TOO_BIG
    assert not _adaptive(training_findings(meta, steps))


def test_sgd_and_short_runs_are_not_read():
    meta = {"layers": [{"name": "a", "kind": "linear"}, {"name": "b", "kind": "linear"}],
            "config": {"optimizer": "SGD"}}
    steps = [{"step": t, "loss": 2.3, "update_ratio": {"a": 0.5, "b": 0.5}} for t in range(1, 61)]
    assert adaptive_steps_too_big(meta, steps) is None
    adam = {**meta, "config": {"optimizer": "AdamW"}}
    assert adaptive_steps_too_big(adam, steps) is not None
    assert adaptive_steps_too_big(adam, steps[:30]) is None  # too few losses to call it slow


def test_autofix_divides_the_rate_by_the_measured_divisor(digits):
    x, y = digits
    torch.manual_seed(0)
    net = zoo.mlp(depth=6, width=64, in_features=64, activation="relu", init="he")
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    with gd.watch(net, opt, example_inputs=x[:8], autofix=True) as w:
        for t in range(100):
            i = torch.arange(t * 32, t * 32 + 32) % len(x)
            loss = torch.nn.functional.cross_entropy(net(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    acted = [e for e in w.fixes if "lower-lr" in e["remedies"]]
    assert acted and "exploding-gradient" in acted[0]["codes"]
    cut = next(c for c in acted[0]["changes"] if c["remedy"] == "lower-lr")
    assert 3 < cut["details"]["factor"] < 8  # divided by first step / 0.1 (~5), not the blow-up's 10
