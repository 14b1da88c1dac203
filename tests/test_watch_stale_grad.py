"""watch: a layer frozen without ``zero_grad`` keeps a stale ``.grad``; it is not recorded as live.

A backbone trained, then frozen with ``requires_grad_(False)`` (its ``.grad`` left in place) and
unfrozen at step 21 was recorded with the same gradient norm on every frozen step and
``unfrozen_at: 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def test_stale_grad_of_a_frozen_layer_is_not_a_gradient() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    F.cross_entropy(net(x), y).backward()  # "pretraining": the backbone's .grad is left set
    net[0].requires_grad_(False)
    opt = torch.optim.SGD(net[2].parameters(), lr=0.1)
    with gd.watch(net, opt) as w:
        for i in range(40):
            if i == 20:
                net[0].requires_grad_(True)
                opt.add_param_group({"params": list(net[0].parameters())})
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            w.step(loss)
    meta, steps = w.records()
    first = next(ly for ly in meta["layers"] if ly["name"] == "0")
    assert first.get("unfrozen_at") == 21
    assert all(s["grad_norm"].get("0") is None for s in steps[:20])
    assert all(s["grad_norm"].get("0") is not None for s in steps[20:])
