"""Autofix on a long run (fix/autofix/watcher.py ``CHECK_SPAN``, judge.py ``thinned``): a check
reads the window since attach, so checking every 10 steps over every record made a run
quadratic (a healthy 2-layer MLP, 2000 steps: 1.6 s plain, 34.7 s under autofix). In a long
window the checks space out and read at most ``CHECK_ROWS`` records; the first 500 steps are
checked as before."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor import data
from graddoctor.fix.autofix import watcher as autofix_watcher
from graddoctor.fix.autofix.judge import CHECK_ROWS

DIGITS = data.load("digits", seed=0)


def test_a_long_healthy_run_is_checked_on_a_bounded_window_and_less_often(monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    real = autofix_watcher.training_findings

    def counting(meta, window, *a, **k):
        seen.append((int(window[-1]["step"]), len(window)))
        return real(meta, window, *a, **k)

    monkeypatch.setattr(autofix_watcher, "training_findings", counting)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g, x, y = torch.Generator().manual_seed(0), DIGITS.x_train, DIGITS.y_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, autofix=True) as w:
            for _ in range(1200):
                i = torch.randint(0, len(x), (32,), generator=g)
                loss = F.cross_entropy(net(x[i]), y[i])
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    assert not w.fixes  # healthy: the control that the checks ran on a run with nothing to fix
    steps = [t for t, _ in seen]
    assert steps[:50] == list(range(9, 509, 10))  # the first 500 steps: every 10 steps, as before (the
    # check after step 10 reads the records up to step 9: the loss given after a step closes it)
    assert len(seen) < 100  # 120 checks at every 10 steps
    assert max(n for _, n in seen) == CHECK_ROWS and seen[-1][0] >= 1100
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) <= 1200 // autofix_watcher.CHECK_SPAN + autofix_watcher.CHECK_EVERY
