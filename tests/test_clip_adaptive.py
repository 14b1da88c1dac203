"""clip-too-tight under an optimizer that rescales the gradient (Adam): the clip at 1e-3 does not
shrink the steps (update/weight stays ~1e-3..1e-2), and the run learns as well as unclipped.

Before: a warning "every step is shrunk to almost nothing". Now info, saying the steps did not
shrink; the same clip under SGD, whose steps it does shrink, is still an error.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd

X = torch.randn(2000, 32, generator=torch.Generator().manual_seed(0))
Y = (X[:, :4].sum(1) > 0).long() + 2 * (X[:, 4:8].sum(1) > 0).long()


def _run(opt_name: str, clip: float, steps: int = 120):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 4))
    opt = torch.optim.Adam(m.parameters(), lr=1e-3) if opt_name == "adam" else torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        for s in range(steps):
            i = (s * 64) % 1936
            loss = F.cross_entropy(m(X[i:i + 64]), Y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), clip)
            opt.step()
            w.step(loss)
    return w.report(), float(loss)


def test_a_tight_clip_under_adam_is_info_and_explains_nothing():
    report, loss = _run("adam", 1e-3)
    (f,) = report.by_code("clip-too-tight")
    assert f.severity == "info" and "did not shrink" in f.message and report.ok
    assert f.evidence["steps_shrunk"] is False and f.evidence["median_update_ratio"] > 1e-3
    assert loss < 0.6  # it learns


def test_the_same_clip_under_sgd_shrinks_the_steps_and_is_an_error():
    report, _ = _run("sgd", 1e-3)
    (f,) = report.by_code("clip-too-tight")
    assert f.severity == "error" and f.evidence["steps_shrunk"] is True and "shrunk to almost nothing" in f.message
