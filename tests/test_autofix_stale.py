"""Autofix does not repeat a re-draw when what is left is a code change.

A 15-layer MLP whose forward calls ``torch.sigmoid`` (no module to swap): its init is off
(poor-init) and it vanishes. Autofix used to re-draw all 16 Linear layers with He's scheme at
step 10 and again at step 50, the sigmoid calls unchanged; a second round would be one "nothing
new in place" event that names the code change, and no second re-draw. Since 2026-12-02 the
re-draw is for the sigmoid that stays (edge-of-chaos-init), and the net learns from it: one
re-draw, and no later round re-draws again.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd
from test_autofix import _loop


class SigmoidCalls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(64, 64) for _ in range(15)])
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = torch.sigmoid(layer(x))
        return self.head(x)


def test_a_re_draw_is_not_repeated_when_the_fix_left_is_a_code_change():
    torch.manual_seed(0)
    net = SigmoidCalls()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = gd.watch(net, opt, autofix=True)
        losses = _loop(net, opt, 150, w)
        w.detach()
    inits = ("he-init", "xavier-init", "edge-of-chaos-init", "lsuv-init", "orthogonal-init")
    redraws = [e for e in w.fixes if set(e["remedies"]) & set(inits)]
    assert len(redraws) == 1 and redraws[0]["remedies"] == ["edge-of-chaos-init"], w.fixes
    for later in (e for e in w.fixes if e["step"] > redraws[0]["step"]):  # a later round only names the code change
        assert later["remedies"] == [] and later.get("noop") and later["repeat_of"] == redraws[0]["step"]
        assert any("sigmoid" in m for m in later["manual"])
    assert sum(losses[-10:]) / 10 < 1.0, losses[-10:]  # it learns: the sigmoid net at its edge of chaos
    assert set(opt.param_groups[0]["params"]) == set(net.parameters())
