"""watch on the plain module while the loop runs it compiled (a ``torch.compile`` wrapper, also
with ``fullgraph=True``, a compiled parent, a compiled train-step function, a compiled
``opt.step``): training runs as without watch (no crash, no recompile), activation sampling goes
off with one warning, gradients are recorded as in an eager run.

Before: ``fullgraph=True`` raised ``Unsupported: Skip calling torch.compiler.disable()d function``
in the user's forward; the sampler's hooks made Dynamo recompile on every sampled step (7-8 graphs
in 200 steps, the recompile limit); a compiled ``opt.step`` traced the step hooks (5 graphs).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters

import graddoctor as gd


class _Parent(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.body = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _compiled_forward(how: str, net: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if how == "eager":
        return net
    if how == "wrapper":
        return torch.compile(net, backend="eager")
    if how == "fullgraph":
        return torch.compile(net, backend="eager", fullgraph=True)
    if how == "parent":
        return torch.compile(_Parent(net), backend="eager", fullgraph=True)
    if how == "method":
        net.compile(backend="eager")
        return net
    assert how == "function"

    @torch.compile(backend="eager", fullgraph=True)
    def forward(x: torch.Tensor) -> torch.Tensor:
        return net(x)
    return forward


def _watched_run(how: str, steps: int, compile_step: bool = False) -> tuple[list[dict], list[str], int]:
    """Train a small MLP under ``gd.watch(net)`` with its forward run as ``how`` says:
    (step records, warning messages, graphs Dynamo compiled)."""
    torch._dynamo.reset()
    counters.clear()
    net = _net()
    call = _compiled_forward(how, net)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    step = torch.compile(opt.step, backend="eager") if compile_step else opt.step
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(net, opt) as w:
            for _ in range(steps):
                loss = F.cross_entropy(call(x), y)
                opt.zero_grad()
                loss.backward()
                step()
                w.step(loss)
    return w.records()[1], [str(c.message) for c in caught], counters["stats"]["unique_graphs"]


def _norms(steps: list[dict]) -> list[float]:
    return [v for s in steps for _, v in sorted(s["grad_norm"].items())]


@pytest.mark.parametrize("how", ["wrapper", "fullgraph", "parent", "method", "function"])
def test_a_compiled_forward_trains_as_without_watch(how: str) -> None:
    steps, said, graphs = _watched_run(how, 24)
    eager, _, _ = _watched_run("eager", 24)
    assert graphs == 1  # compiled once: no guard on graddoctor's state, no graph break
    assert len([m for m in said if "runs torch.compile'd" in m]) == 1
    assert len(steps) == 24 and not any("act" in s for s in steps)
    assert _norms(steps) == pytest.approx(_norms(eager), rel=1e-4)


def test_a_compiled_optimizer_step_runs_the_hooks_eagerly() -> None:
    steps, said, graphs = _watched_run("eager", 12, compile_step=True)
    eager, _, _ = _watched_run("eager", 12)
    assert graphs == 1 and not [m for m in said if "graddoctor" in m]
    assert _norms(steps) == pytest.approx(_norms(eager), rel=1e-4)
    assert any("act" in s for s in steps)  # the forward is eager: sampled as usual


def test_a_plain_model_keeps_its_activation_statistics() -> None:
    steps, said, _ = _watched_run("eager", 3)
    assert any("act" in s for s in steps) and not [m for m in said if "compile" in m]


def test_watching_the_compiled_wrapper_still_maps_the_model() -> None:
    """Given the wrapper (``gd.watch(torch.compile(net, fullgraph=True))``), watch's hooks sit on
    the wrapper and run eagerly around the compiled call: its first forward maps the model."""
    torch._dynamo.reset()
    counters.clear()
    net = _net()
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    with pytest.warns(UserWarning, match="activation statistics are off"), gd.watch(compiled, opt) as w:
        for _ in range(4):
            loss = F.cross_entropy(compiled(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    meta, steps = w.records()
    assert meta["config"]["mapped"] and [ly["name"] for ly in meta["layers"]] == ["0", "2", "4"]
    assert len(steps) == 4 and counters["stats"]["unique_graphs"] == 1
