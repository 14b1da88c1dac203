"""Which layers enter a gradient profile: the training rules profile the weight layers that carry
the backpropagated signal (linear, conv, rnn, attention); the init probe profiles those and also
"other" parameter-owning modules (custom cells, gates), whose output signal it measures itself."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.series import profile_layers


class Gate(nn.Module):
    """A custom parameter-owning module: kind "other"."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Parameter(torch.ones(4))

    def forward(self, x):
        return x * self.g


def test_the_probe_profiles_other_layers_and_the_training_rules_do_not():
    """Linear, Gate, LayerNorm, Tanh, Linear: the probe profiles "0", "1" (other) and "4"; the
    training rules' profile of the watched run holds "0" and "4" only; the norm is in neither."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), Gate(), nn.LayerNorm(4), nn.Tanh(), nn.Linear(4, 3))
    x = torch.randn(2, 4)
    probe = gd.check(net, x).data["probe"]
    assert list(zip(probe["layers"], probe["kinds"])) == [("0", "linear"), ("1", "other"), ("4", "linear")]
    with gd.watch(net, example_inputs=x) as w:
        net(x).sum().backward()
        w.step()
    meta = w.records()[0]
    assert {ly["name"]: ly["kind"] for ly in meta["layers"]} == {"0": "linear", "1": "other", "2": "norm",
                                                                  "4": "linear"}
    assert profile_layers(meta) == ["0", "4"]
