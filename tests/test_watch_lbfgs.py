"""watch: L-BFGS sets its own step length, so its large relative steps are no exploding gradient.

A healthy L-BFGS run (strong Wolfe line search) on digits moved its weights by ~47% of their norm
per step while its loss fell from 2.31 to 0.65 in 9 steps; watch called it an exploding gradient
and autofix rolled it back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.instability import oversized_updates


def test_oversized_updates_skip_self_sized_optimizers() -> None:
    steps = [{"step": t, "update_ratio": {"a": 0.4}} for t in (1, 2, 4, 8, 16)]
    meta = {"layers": [{"name": "a", "kind": "linear"}], "config": {"optimizer": "SGD"}}
    assert oversized_updates(meta, steps) is not None
    assert oversized_updates({**meta, "config": {"optimizer": "LBFGS"}}, steps) is None


def test_healthy_lbfgs_run_gets_no_finding_and_no_rollback() -> None:
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    x, y = torch.tensor(x[:512], dtype=torch.float32) / 16, torch.tensor(y[:512])
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.LBFGS(net.parameters(), lr=1, max_iter=5, line_search_fn="strong_wolfe")
    with gd.watch(net, opt, autofix=True) as w:
        for _ in range(40):
            def closure() -> torch.Tensor:
                opt.zero_grad()
                loss = F.cross_entropy(net(x), y)
                loss.backward()
                return loss
            loss = opt.step(closure)
            w.step(loss)
    assert float(loss) < 0.5
    assert not [f for f in w.report().findings if f.severity in ("warning", "error")]
    assert not w.fixes  # no rollback, and no re-draw of an init that trains (loss < ln(10)/2 by step 10)
