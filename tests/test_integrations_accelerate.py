"""gd.watch through Accelerate: the wrapped optimizer is unwrapped, and the norms recorded per
optimizer step equal p.grad's norms measured by hand just before each real optimizer step."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.measure.monitor.optimizers import unwrap_optimizer

accelerate = pytest.importorskip("accelerate")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _layer_norm(module: nn.Module) -> float:
    return torch.cat([p.grad.flatten() for p in module.parameters()]).norm().item()


def _fresh_accelerator(**kw):
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return accelerate.Accelerator(cpu=True, **kw)


def test_unwrap_follows_accelerated_optimizer():
    acc = _fresh_accelerator()
    net = _net()
    inner = torch.optim.SGD(net.parameters(), lr=0.1)
    _, opt = acc.prepare(net, inner)
    assert type(opt).__name__ == "AcceleratedOptimizer"
    assert unwrap_optimizer(opt) is inner


@pytest.mark.parametrize("accum", [1, 3])
def test_watch_accelerated_loop_records_final_gradients(accum):
    acc = _fresh_accelerator(gradient_accumulation_steps=accum)
    net = _net()
    model, opt = acc.prepare(net, torch.optim.SGD(net.parameters(), lr=0.05))
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(5, 4, generator=g), torch.randn(5, 1, generator=g)) for _ in range(12)]
    expected, losses, micro = [], [], []
    with gd.watch(model, opt) as w:
        for x, y in batches:
            with acc.accumulate(model):
                loss = nn.functional.mse_loss(model(x), y)
                acc.backward(loss)
                micro.append(loss.item())
                if acc.sync_gradients:
                    expected.append({n: _layer_norm(model[int(n)]) for n in ("0", "2")})
                    losses.append(sum(micro) / len(micro))
                    micro = []
                opt.step()
                opt.zero_grad()
                w.step(loss)  # after opt.step(), every micro-batch: the step's loss is its micro-batches' mean
    meta, steps = w.records()
    assert len(steps) == len(batches) // accum == len(expected)
    for rec, ref, mean_loss in zip(steps, expected, losses):
        assert rec["loss"] == pytest.approx(mean_loss, rel=1e-6)
        for name, norm in ref.items():
            assert rec["grad_norm"][name] == pytest.approx(norm, rel=1e-5)
