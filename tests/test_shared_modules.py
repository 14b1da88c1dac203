"""A module registered under several names (weight sharing) is one layer, named by the first
name it is registered under, in the map and in the init probe alike."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


def test_a_shared_module_is_one_layer_under_its_first_name():
    """``Sequential(lin, tanh, lin, out)``: layers "0" (called twice, listed as shared) and "3";
    the name "2" appears nowhere; the probe profiles the same two layers."""
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, nn.Tanh(), lin, nn.Linear(3, 1))
    x = torch.randn(2, 3)
    m = gd.ModelMap(net, x)
    assert [(x.name, x.calls) for x in m.layers] == [("0", 2), ("3", 1)]
    assert m.shared == ["0"] and [c.name for c in m.calls] == ["0", "1", "0", "3"]
    assert m.layer("0").params == ["0.weight", "0.bias"]
    assert gd.check(net, x).data["probe"]["layers"] == ["0", "3"]
