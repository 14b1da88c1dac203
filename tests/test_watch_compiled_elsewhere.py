"""watch on the plain module while the loop calls ``torch.compile(model)``: activation sampling
goes off with one warning (its per-step hooks made Dynamo recompile: 10x slower), gradients stay.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def test_watching_the_inner_module_of_a_compiled_model() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    compiled = torch.compile(net, backend="eager")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(net, opt) as w:
            for _ in range(5):
                loss = F.cross_entropy(compiled(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    said = [str(c.message) for c in caught if "runs torch.compile'd" in str(c.message)]
    assert len(said) == 1
    _, steps = w.records()
    assert len(steps) == 5 and not any("act" in s for s in steps)
    assert all(s["grad_norm"].get("0") is not None for s in steps)


def test_a_plain_model_keeps_its_activation_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with gd.watch(net, opt) as w:
        for _ in range(3):
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    assert any("act" in s for s in w.records()[1])
