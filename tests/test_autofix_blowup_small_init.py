"""autofix: a blow-up in a net whose init is too *small* gets a lower rate with its re-draw.

Weights too small cannot blow a run up. A default-init ReLU MLP at SGD 3.0 with momentum 0.9
blew up; autofix re-drew it (``poor-init``, the signal shrinking) at the same rate, and it went
on blowing up (test accuracy 0.28).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import graddoctor as gd


def test_blowup_with_a_small_init_lowers_the_rate_at_once() -> None:
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x, dtype=torch.float32) / 16, torch.tensor(y)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                        nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(net.parameters(), lr=3.0, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    with gd.watch(net, opt, autofix=True) as w:
        for _ in range(200):
            idx = torch.randint(0, 1500, (64,), generator=gen)
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    first = w.fixes[0]
    assert first["blowup"] and {"he-init", "lower-lr"} <= set(first["remedies"])
    assert opt.param_groups[0]["lr"] <= 0.3
    with torch.no_grad():
        acc = (net(x[1500:]).argmax(1) == y[1500:]).float().mean().item()
    assert acc > 0.8
