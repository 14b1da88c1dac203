"""Which modules are activations: a "tanh" (or other) fragment in a class name is not enough
when the module is a shrink function (``x - tanh(x)`` and friends are unbounded)."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


class TanhShrinkish(nn.Module):  # a third-party name with a "tanh" fragment
    def forward(self, x):
        return x - torch.tanh(x)


def _sites(act: nn.Module) -> list[tuple[str, str, bool]]:
    net = nn.Sequential(nn.Linear(4, 4), act, nn.Linear(4, 2))
    return [(s.name, s.kind, s.functional) for s in gd.ModelMap(net, torch.randn(2, 4)).activations]


def test_shrink_modules_are_not_taken_for_tanh():
    """Tanhshrink, Softshrink and Hardshrink are no activation sites, and a third-party
    "TanhShrinkish" module is none either (only the ``torch.tanh`` it calls is, as a functional
    site); ``nn.Tanh`` in the same place is a module site of kind tanh."""
    for act in (nn.Tanhshrink(), nn.Softshrink(), nn.Hardshrink()):
        assert _sites(act) == [], type(act).__name__
    assert _sites(TanhShrinkish()) == [("1/tanh#0", "tanh", True)]
    assert _sites(nn.Tanh()) == [("1", "tanh", False)]
