"""watch's per-step path: NaN/Inf gradients are flagged on every device (values counted on CPU,
tensors flagged from the fused norms elsewhere), and sampled steps copy nothing from the host."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


def _two_nonfinite_steps(net: nn.Sequential, w, opt: torch.optim.Optimizer, x: torch.Tensor) -> list[dict]:
    """Step 1: layer "0" has one NaN weight gradient and an all-Inf bias gradient; step 2: clean."""
    with w:
        net(x).sum().backward()
        net[0].weight.grad[0, 0] = float("nan")
        net[0].bias.grad[:] = float("inf")
        opt.step()
        opt.zero_grad()
        net[0].reset_parameters()  # lr 0 * NaN made the weights NaN
        net(x).sum().backward()
        opt.step()
    return w.records()[1]


def test_cpu_counts_nonfinite_values():
    """On CPU the run log counts NaN/Inf *values* (``nonfinite_unit: values``): 1 + 3 on layer 0."""
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    w = gd.watch(net, opt, example_inputs=torch.ones(1, 2))
    assert w.records()[0]["config"]["nonfinite_unit"] == "values"
    steps = _two_nonfinite_steps(net, w, opt, torch.ones(1, 2))
    assert steps[0]["nonfinite"] == {"0": 4, "1": 0} and steps[1]["nonfinite"] == {"0": 0, "1": 0}


def test_device_path_flags_nonfinite_tensors_from_the_fused_norms():
    """Without a host read per step (the path of every non-CPU device) the run log flags the
    gradient *tensors* whose norm is NaN/Inf: 2 on layer 0 (weight and bias), then 0 again.
    Forced on CPU through the watcher's ``_host_check`` switch."""
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    w = gd.watch(net, opt, example_inputs=torch.ones(1, 2))
    w._host_check = False  # internal switch: what a GPU run does
    steps = _two_nonfinite_steps(net, w, opt, torch.ones(1, 2))
    assert steps[0]["nonfinite"] == {"0": 2, "1": 0} and steps[1]["nonfinite"] == {"0": 0, "1": 0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_flags_nonfinite_tensors_from_the_fused_norms():
    """On CUDA the run log says ``nonfinite_unit: tensors`` and flags the 2 non-finite tensors."""
    net = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)).cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    x = torch.ones(1, 2, device="cuda")
    w = gd.watch(net, opt, example_inputs=x)
    assert w.records()[0]["config"]["nonfinite_unit"] == "tensors"
    steps = _two_nonfinite_steps(net, w, opt, x)
    assert steps[0]["nonfinite"] == {"0": 2, "1": 0} and steps[1]["nonfinite"] == {"0": 0, "1": 0}


def test_sampled_steps_build_no_index_tensor_from_python_lists(monkeypatch):
    """After warm-up, an activation-sampled step calls no ``torch.tensor`` (no host-to-device copy
    of index lists) and still samples the tanh site."""
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.randn(5, 3)
    calls = []
    real = torch.tensor
    with gd.watch(net, opt, example_inputs=x, activation_every=1) as w:
        for i in range(3):
            if i == 2:  # after warm-up: every index is cached
                monkeypatch.setattr(torch, "tensor", lambda *a, **k: calls.append(a) or real(*a, **k))
            net(x).pow(2).mean().backward()
            monkeypatch.setattr(torch, "tensor", real)
            opt.step()
            opt.zero_grad()
    assert calls == []
    assert "1" in w.records()[1][2]["act"]  # the tanh site was sampled on that step
