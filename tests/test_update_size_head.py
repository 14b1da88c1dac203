"""exploding-gradient's update-size path reads the body, not the output layer.

A classifier's head grows from its small init in the first steps: its relative updates are large
while the run is healthy (a trial: logistic regression on digits, SGD 0.05 with momentum 0.9,
read 0.05-0.07 at steps 4-16, threshold 0.035; autofix rolled it back and cut its rate, held-out
accuracy 0.92 -> 0.89-0.91).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.instability import UPDATE_TOO_BIG, oversized_updates


def _meta(names: list[str], head: str) -> dict:
    return {"layers": [{"name": n, "kind": "linear", "is_output": n == head} for n in names],
            "config": {"optimizer": "SGD"}}


def _steps(ratios: dict[str, float]) -> list[dict]:
    return [{"step": t, "update_ratio": dict(ratios)} for t in (4, 8, 16, 32)]


def test_a_large_head_step_over_a_calm_body_is_no_finding():
    meta = _meta(["a", "b", "head"], "head")
    assert oversized_updates(meta, _steps({"a": 0.01, "b": 0.01, "head": 0.2})) is None


def test_a_model_that_is_only_its_head_is_no_finding():
    assert oversized_updates(_meta(["head"], "head"), _steps({"head": 0.2})) is None


def test_a_large_body_step_is_still_a_finding():
    meta = _meta(["rnn", "head"], "head")
    f = oversized_updates(meta, _steps({"rnn": 2 * UPDATE_TOO_BIG, "head": 0.2}))
    assert f is not None and f.evidence["median_update_ratio"] == 2 * UPDATE_TOO_BIG


def test_logistic_regression_with_momentum_sgd_is_left_alone_by_autofix():
    data = gd.data.load("digits", seed=0)
    x, y = data.x_train.float(), data.y_train
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, optimizer=opt, example_inputs=x[:64], autofix=True) as w:
            for _ in range(60):
                idx = torch.randint(0, len(x), (64,), generator=g)
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
            codes = {f.code for f in w.report().findings}
    assert w.fixes == []
    assert "exploding-gradient" not in codes
