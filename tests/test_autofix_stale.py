"""Autofix does not repeat a re-draw when what is left is a code change.

A 15-layer MLP whose forward calls ``torch.sigmoid`` (no module to swap): its init is off
(poor-init) and it vanishes. Autofix used to re-draw all 16 Linear layers with He's scheme at
step 10 and again at step 50, the sigmoid calls unchanged; the second round now is one "nothing
new in place" event that names the code change, and no second re-draw (the first one is
then judged on its trial as any fix is).
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
        _loop(net, opt, 150, w)
        w.detach()
    redraws = [e for e in w.fixes if "he-init" in e["remedies"]]
    assert len(redraws) == 1, [(e["step"], e["remedies"]) for e in w.fixes]
    later = [e for e in w.fixes if e["step"] > redraws[0]["step"]]
    assert later, "the vanishing net's later check said nothing"
    assert later[0]["remedies"] == [] and later[0].get("noop")
    assert later[0]["repeat_of"] == redraws[0]["step"]
    assert "nothing new in place" in later[0]["message"]
    assert any("sigmoid" in m for m in later[0]["manual"])
    assert set(opt.param_groups[0]["params"]) == set(net.parameters())
