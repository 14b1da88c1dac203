"""A wrapper optimizer whose own ``step`` is never called (SAM's ``first_step``/``second_step``
step its base optimizer): a short run's report named "w.step(loss) never called" although it
was called every step; it now says the optimizer given to watch never stepped."""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd


class TwoStep(torch.optim.Optimizer):
    """SAM-shaped: steps ``base`` in ``second_step``; its own ``step`` is never used by the loop."""

    def __init__(self, params, base_cls=torch.optim.SGD, **kw) -> None:
        super().__init__(params, dict(kw))
        self.base = base_cls(self.param_groups, **kw)

    def second_step(self) -> None:
        self.base.step()


def test_a_short_run_whose_watched_optimizer_never_steps_says_so():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = TwoStep(net.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt) as w:
            for _ in range(42):
                loss = net(torch.randn(8, 4)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.second_step()
                w.step(loss)
    summary = w.report().summary()
    assert "w.step() was called 42 times but the TwoStep given to watch() never stepped" in summary
    assert "never called" not in summary
