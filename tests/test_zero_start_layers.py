"""Layers that start at (near) zero: a zero or muP 1/width readout, an adapter's zero
up-projection, LoRA's B. Their ||g||/||w|| is inflated while ||w|| is tiny, and the layers they
feed get tiny gradients for a few steps: a start-up transient, not a gradient that vanishes.

Before: a 4-layer tanh MLP with a zero head (AdamW 1e-3, loss 2.30 -> 0.41 by step 39) got a
vanishing-gradient finding and autofix swapped tanh for ReLU and re-drew every weight at step 40
(loss back to 2.54); with ReLU, "nothing applicable in place" was logged on a healthy run. LoRA on
a tiny BERT got a vanishing-gradient warning from its first 3 steps.
Now: near-zero weights leave the row's profile (``series.near_zero_weights``), and a drop flagged
on under 10% of the steps and none of the last 20 is info (``series.transient``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.series import near_zero_weights, transient


def _run(act, head: str, autofix: bool = True, steps: int = 120):
    data = gd.data.load("digits", seed=0)
    x, y = data.x_train.float(), data.y_train
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), act(), nn.Linear(128, 128), act(), nn.Linear(128, 128), act(),
                          nn.Linear(128, 10))
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu" if act is nn.ReLU else "linear")
            nn.init.zeros_(m.bias)
    if head == "zero":
        nn.init.zeros_(model[-1].weight)
    else:
        nn.init.normal_(model[-1].weight, std=1.0 / 128)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, opt, autofix=autofix, example_inputs=x[:64]) as w:
            for i in range(steps):
                idx = torch.randint(0, len(x), (64,), generator=torch.Generator().manual_seed(i))
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    return w, float(loss)


@pytest.mark.parametrize("act, head", [(nn.Tanh, "zero"), (nn.Tanh, "inv_width"), (nn.ReLU, "zero")])
def test_a_zero_or_mup_readout_gets_no_autofix_round_and_no_warning(act, head):
    w, loss = _run(act, head)
    assert w.fixes == [] and loss < 0.5
    assert all(f.severity == "info" for f in w.report().findings if f.code == "vanishing-gradient")


def test_near_zero_weights_mark_only_the_tiny_layer():
    meta = {"layers": [{"name": n, "numel": 100} for n in "abcd"]}
    rows = [{"weight_norm": {"a": 1.0, "b": 1.2, "c": 0.9, "d": 1e-3}},
            {"weight_norm": {"a": 1.0, "b": 1.2, "c": 0.9, "d": 0.5}}]
    assert near_zero_weights(meta, rows, list("abcd")).tolist() == [[False, False, False, True]] + [[False] * 4]


def test_a_drop_that_stays_is_not_a_transient():
    assert transient([True] * 3 + [False] * 60)
    assert not transient([True] * 10 + [False] * 60)  # 14% of the steps: not few
    assert not transient([False] * 60 + [True] * 3)  # flagged lately: not a start-up transient
    assert not transient(list(np.ones(30, dtype=bool)))


def test_rows_without_weight_norms_mark_nothing_and_warn_nothing():
    meta = {"layers": [{"name": "a", "numel": 10}, {"name": "b", "numel": 10}]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        marks = near_zero_weights(meta, [{"weight_norm": {}}, {}, {"weight_norm": {"a": 1.0}}], ["a", "b"])
    assert not marks.any()
