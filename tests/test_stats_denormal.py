"""TensorNorms sums in float64 once a tensor's squares would be denormal float32 numbers
(slow on x86 CPUs), and its norms stay those of a plain-autograd float64 oracle."""

from __future__ import annotations

import torch

from graddoctor.measure.norms import TensorNorms


def _oracle(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.double().pow(2).sum().sqrt() for t in ts])


def test_tiny_gradients_switch_to_float64_sums_and_stay_exact():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(64, 64, generator=g) * 1e-21, torch.randn(64, 64, generator=g)] + \
         [torch.randn(8, generator=g) * 1e-22 for _ in range(4)]
    tn = TensorNorms(ts)
    first = tn.ordered([ts[i] for i in tn.order], torch.empty(len(ts)))
    tn.note(first)
    assert tn._tiny == [a < 1e-15 for a in first.tolist()]  # the first call saw the tiny RMS
    again = tn.ordered([ts[i] for i in tn.order], torch.empty(len(ts)))
    want = _oracle([ts[i] for i in tn.order]).float()
    assert torch.allclose(first, want, rtol=1e-5) and torch.allclose(again, want, rtol=1e-6)
    assert again.dtype == torch.float32


def test_healthy_gradients_keep_float32_sums():
    ts = [torch.randn(64, 64), torch.randn(10)]
    tn = TensorNorms(ts)
    out = tn.ordered([ts[i] for i in tn.order], torch.empty(2))
    tn.note(out)
    assert not any(tn._tiny)
    assert torch.allclose(out, _oracle([ts[i] for i in tn.order]).float(), rtol=1e-5)


def test_zero_gradients_are_no_reason_to_switch():
    ts = [torch.zeros(32, 32), torch.ones(5)]
    tn = TensorNorms(ts)
    tn.note(tn.ordered([ts[i] for i in tn.order], torch.empty(2)))
    assert not any(tn._tiny)


def test_watch_switches_a_vanishing_nets_tiny_layers_to_float64_sums():
    from torch import nn

    import graddoctor as gd
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(50) for m in (nn.Linear(32, 32), nn.ReLU())], nn.Linear(32, 3))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 32), torch.randint(0, 3, (16,))
    with gd.watch(model, optimizer=opt) as w:
        for _ in range(3):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
        tiny = w.steps.ring.norms._tiny
    assert 0 < sum(tiny) < len(tiny)  # the input side only
