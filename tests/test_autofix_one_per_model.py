"""One autofix watcher repairs a model at a time: a second ``gd.watch(..., autofix=True)`` on
the same model warns once and only watches (two would both re-draw and rebind the same model
and optimizer); after the first detaches, a new one autofixes again."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import graddoctor as gd
from graddoctor import data, zoo

DIGITS = data.load("digits", seed=0)


def _run(net, opt, watchers, steps=20):
    g, x, y = torch.Generator().manual_seed(0), DIGITS.x_train, DIGITS.y_train
    for _ in range(steps):
        i = torch.randint(0, len(x), (32,), generator=g)
        loss = F.cross_entropy(net(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        for w in watchers:
            w.step(loss)


def test_a_second_autofix_watcher_on_the_same_model_only_watches() -> None:
    net = zoo.mlp(depth=20, width=32, activation="sigmoid", seed=0)  # the init audit acts at step 10
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = gd.watch(net, opt, autofix=True)
    with pytest.warns(UserWarning, match="another gd.watch.*autofix=True.*is attached to this model"):
        second = gd.watch(net, opt, autofix=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _run(net, opt, [first, second])
    assert [e["step"] for e in first.fixes] == [10] and second.fixes == []
    assert second.records()[1]  # it still records
    first.detach()
    second.detach()
    net2 = zoo.mlp(depth=20, width=32, activation="sigmoid", seed=0)
    opt2 = torch.optim.Adam(net2.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning: the model has no other watcher
        third = gd.watch(net2, opt2, autofix=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _run(net2, opt2, [third])
    third.detach()
    assert [e["step"] for e in third.fixes] == [10]
