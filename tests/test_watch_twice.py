"""A second ``gd.watch`` on a model that a first one still watches with the same optimizer warns
once; a watch after the first's detach, on another module, or with another optimizer (a GAN's
two) does not."""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _messages(fn) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if "still attached" in str(w.message)]


def test_second_watch_on_a_watched_model_warns_once_and_both_record():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    first = gd.watch(net, opt)
    out = {}
    msgs = _messages(lambda: out.setdefault("w", gd.watch(net, opt)))
    second = out["w"]
    assert len(msgs) == 1 and "detach the first" in msgs[0]
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(3):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first.step(loss)
        second.step(loss)
    assert len(first.records()[1]) == len(second.records()[1]) == 3  # the user's run is not broken
    second.detach()
    first.detach()


def test_watch_after_detach_or_on_another_module_is_silent():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gd.watch(net, opt).detach()
    with_first = {}
    assert _messages(lambda: with_first.setdefault("w", gd.watch(net, opt))) == []
    head = nn.Linear(2, 2)
    assert _messages(lambda: gd.watch(head, torch.optim.SGD(head.parameters(), lr=0.1)).detach()) == []
    with_first["w"].detach()
    with gd.watch(net, opt):
        pass
    assert _messages(lambda: gd.watch(net, opt).detach()) == []


def test_a_second_optimizer_on_the_same_model_is_silent():
    net = _net()
    opt_a = torch.optim.SGD(net[0].parameters(), lr=0.1)
    opt_b = torch.optim.SGD(net[2].parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the left-out-parameters line of each
        first = gd.watch(net, opt_a)
    assert _messages(lambda: gd.watch(net, opt_b).detach()) == []
    first.detach()
