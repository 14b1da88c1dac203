"""``gd.lr_find`` inside a watched loop: the user's watcher records none of the sweep's steps (it
recorded them as training steps 11-50, and under autofix read the sweep's divergence as a blow-up:
rolled back, clipped and lowered the rate 0.01 -> 0.001), says nothing about "another watch", and
records the loop's own steps on either side; the sweep still judges its own gradients."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def test_a_sweep_mid_run_leaves_the_watched_run_alone() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4:8].sum(1) > 0).long()
    batches = [(x[i:i + 32], y[i:i + 32]) for i in range(0, 256, 32)]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train(n: int, w) -> None:
        for i in range(n):
            xb, yb = batches[i % len(batches)]
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(model, opt, flush_every=5, autofix=True) as w:
            train(10, w)
            result = gd.lr_find(model, opt, batches, num_steps=40, end_lr=100)
            train(10, w)
    steps = w.records()[1]
    assert [s["step"] for s in steps] == list(range(1, 21))
    assert {s["lr"] for s in steps} == {0.01} and opt.param_groups[0]["lr"] == 0.01
    assert w.fixes == []
    assert not [c for c in caught if "another gd.watch" in str(c.message)]
    assert result.gradients is not None and len(result.lrs) > 10  # the sweep's own records
