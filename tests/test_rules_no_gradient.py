"""no-gradient: a trainable branch the forward detaches gets a warning; frozen layers and a
model whose every layer trains get none (real models under gd.watch)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from test_autofix import _loop


class Branches(nn.Module):
    def __init__(self, detach: bool = False, frozen: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.skip = nn.Linear(64, 32)
        self.head = nn.Linear(32, 10)
        self.detach = detach
        if frozen:
            self.features.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head((f.detach() if self.detach else f) + self.skip(x))


def _codes(model: nn.Module) -> dict[str, list[str]]:
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with gd.watch(model, opt) as w:
        _loop(model, opt, 30, w)
    return {f.code: f.layers for f in w.report().findings}


@pytest.mark.parametrize("detach, frozen, expected", [(True, False, ["features.0", "features.2"]),
                                                      (False, False, None), (False, True, None)],
                         ids=["detached", "healthy", "frozen"])
def test_no_gradient_names_the_detached_layers_only(detach, frozen, expected):
    torch.manual_seed(0)
    found = _codes(Branches(detach, frozen))
    assert found.get("no-gradient") == expected, found
