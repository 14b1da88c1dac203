"""The ModelMap fields check relies on: weight-layer paths, gate and after_layer sites, restored_state."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor import zoo
from graddoctor.modelmap import ModelMap, restored_state


def test_weight_paths_skip_norms_and_follow_shortcuts():
    m = ModelMap(zoo.mlp(depth=5, norm="batch"), torch.randn(4, 64))
    assert (m.shortest_path, m.longest_path) == (9, 9)  # 5 Linear + 4 BatchNorm
    assert (m.shortest_weight_path, m.longest_weight_path) == (5, 5)
    r = ModelMap(zoo.mlp(depth=6, residual="plain"), torch.randn(4, 64))
    assert r.longest_weight_path == 6 and r.shortest_weight_path == 2  # input Linear + head
    assert r.to_dict()["shortest_weight_path"] == 2


def test_gate_and_after_layer():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)
            self.b = nn.Linear(4, 4)
            self.c = nn.Linear(4, 4)
            self.s = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            x = torch.tanh(x)  # on the raw input: not after a layer
            h = self.a(x) * torch.sigmoid(self.b(x))  # a gate
            h = torch.tanh(self.c(h))  # a hidden activation
            return h * 2 + torch.sigmoid(self.s)  # sigmoid of a parameter: no data

    sites = {s.name: s for s in ModelMap(Net(), torch.randn(2, 4)).activations}
    assert [(n, s.gate, s.after_layer) for n, s in sites.items()] == [
        ("model/tanh#0", False, False), ("model/sigmoid#0", True, True),
        ("model/tanh#1", False, True), ("model/sigmoid#1", False, False)]


def test_restored_state():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout(0.5)).eval()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    with restored_state(net):
        net.train()
        net(torch.randn(8, 2))
    assert torch.equal(torch.rand(2), expected)
    assert not any(m.training for m in net.modules())
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
