"""A model-level remedy that finds no trainable module changed nothing, and says so.

Before, ``he-init`` on a model whose layers were all frozen returned an "applied" change on zero
modules, and autofix logged it as "weights re-initialised".
"""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from graddoctor.fix.autofix.events import fix_event
from graddoctor.fix.remedies.base import Change
from graddoctor.report import Finding


def _frozen() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 4))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def test_an_init_remedy_on_a_frozen_model_is_advice_on_no_modules():
    net = _frozen()
    before = [p.clone() for p in net.parameters()]
    for remedy in ("he-init", "xavier-init", "orthogonal-init"):
        result = gd.repair(net, [], torch.randn(8, 16), remedies=[remedy])
        change = next(c for c in result.changes if c.remedy == remedy)
        assert change.kind == "advice" and change.modules == [] and "no trainable layer" in change.why
        assert all(torch.equal(a, b) for a, b in zip(before, result.model.parameters()))


def test_the_same_remedy_on_a_trainable_model_is_applied():
    net = _frozen()
    for p in net.parameters():
        p.requires_grad_(True)
    change = next(c for c in gd.repair(net, [], torch.randn(8, 16), remedies=["he-init"]).changes
                  if c.remedy == "he-init")
    assert change.kind == "applied" and len(change.modules) == 7


def test_an_event_says_weights_re_initialised_only_when_some_were():
    cause = [Finding("vanishing-gradient", "error", "v")]
    counts = {"added": 0, "dropped": 0, "reset": 0}
    drawn = fix_event(10, cause, [Change("he-init", ["0", "2"], "w", "applied")], counts, False)
    assert drawn["message"].endswith("weights re-initialised")
