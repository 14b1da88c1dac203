"""watch on the plain module while the loop calls ``torch.compile(model)``: activation sampling
goes off with one warning (its per-step hooks made Dynamo recompile: 10x slower), gradients stay.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def _watched_run(compile_it: bool, steps: int) -> tuple[list[dict], list[str]]:
    """Train a small MLP under ``gd.watch`` (through a compiled wrapper when ``compile_it``):
    (step records, warning messages)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    call: Callable = torch.compile(net, backend="eager") if compile_it else net
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(net, opt) as w:
            for _ in range(steps):
                loss = F.cross_entropy(call(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    return w.records()[1], [str(c.message) for c in caught]


def test_watching_the_inner_module_of_a_compiled_model() -> None:
    steps, said = _watched_run(True, 5)
    assert len([m for m in said if "runs torch.compile'd" in m]) == 1
    assert len(steps) == 5 and not any("act" in s for s in steps)
    assert all(s["grad_norm"].get("0") is not None for s in steps)


def test_a_plain_model_keeps_its_activation_statistics() -> None:
    steps, _ = _watched_run(False, 3)
    assert any("act" in s for s in steps)
