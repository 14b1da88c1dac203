"""The init probe reads any output structure, uses the model's own loss wherever it is, and does not
profile parameters held at the model's root (a CLIP-style ``logit_scale``)."""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import graddoctor as gd

Out = namedtuple("Out", "logits loss")


@dataclass
class DataOut:
    logits: torch.Tensor
    aux: dict
    loss: torch.Tensor | None = None


class Net(nn.Module):
    def __init__(self, style: str) -> None:
        super().__init__()
        self.style = style
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        logits = self.body(x)
        loss = nn.functional.cross_entropy(logits, y)
        return {
            "tuple": lambda: (loss, logits),
            "namedtuple": lambda: Out(logits, loss),
            "dataclass": lambda: DataOut(logits, {"h": [logits * 2]}, loss),
            "nested": lambda: {"out": (logits,), "extra": {"loss": loss}},
        }[self.style]()


@pytest.mark.parametrize("style,source", [("tuple", "model"), ("namedtuple", "model"), ("dataclass", "model"),
                                          ("nested", "projection")])
def test_own_loss_from_any_output_structure(style: str, source: str):
    torch.manual_seed(0)
    net, x, y = Net(style), torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    p = gd.check(net, (x, y)).data["probe"]
    assert p["loss_source"] == source
    assert p["layers"] == ["body.0", "body.2", "body.4"]  # the structure was read: every layer profiled
    if source == "model":
        expected = nn.functional.cross_entropy(net.body(x), y)
        assert p["loss"] == pytest.approx(float(expected.detach()), rel=1e-6)


class RootScale(nn.Module):
    """Two towers and a learnable ``logit_scale`` at the root; returns (loss, logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.img = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 16))
        self.txt = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 16))
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))

    def forward(self, a: torch.Tensor, b: torch.Tensor):
        ia = nn.functional.normalize(self.img(a), dim=-1)
        tb = nn.functional.normalize(self.txt(b), dim=-1)
        logits = self.logit_scale.exp() * ia @ tb.T
        labels = torch.arange(len(a))
        return nn.functional.cross_entropy(logits, labels), logits


def test_root_held_parameter_is_not_a_probed_layer():
    torch.manual_seed(0)
    r = gd.check(RootScale(), (torch.randn(8, 8), torch.randn(8, 8)))
    p = r.data["probe"]
    assert "" not in p["layers"] and p["loss_source"] == "model"
    assert len(p["layers"]) == 6 and min(p["act_var"]) > 0
    assert "signal-collapse" not in r.codes and r.ok, str(r)
