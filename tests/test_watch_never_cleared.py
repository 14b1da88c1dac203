"""``optimizer.zero_grad()`` missing: each step applies the sum of every gradient so far. Watch
records when a step's first ``.grad`` is the previous step's tensor (``grad_kept``), and when the
total gradient norm also grows the findings name the missing call instead of a learning rate
"far too high" (a held-out trial: a BN CNN with SGD at a sound rate, 0.10 against 0.98)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def _run(clear: str, steps: int = 120, adam: bool = False) -> gd.Watcher:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = x[:, :4].argmax(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4) if adam
           else torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9))
    with gd.watch(model, opt) as w:
        for _ in range(steps):
            idx = torch.randint(0, 256, (32,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if clear != "missing":
                opt.zero_grad(set_to_none=clear == "default")
            loss.backward()
            opt.step()
            w.step(loss)
    return w


@pytest.mark.parametrize("adam", [False, True])
def test_a_loop_without_zero_grad_is_named(adam: bool) -> None:
    w = _run("missing", adam=adam)
    steps = w.records()[1]
    assert sum(bool(s.get("grad_kept")) for s in steps) == len(steps) - 1  # every step after the first
    named = [f for f in w.report().findings if f.evidence.get("grads_never_cleared")]
    assert named and all(f.remedies == [] and "zero_grad()" in f.message for f in named)
    assert "exploding-gradient" in {f.code for f in named}


def test_zero_grad_keeping_the_tensors_zeroed_is_not_read_as_missing() -> None:
    w = _run("kept-zeroed")  # zero_grad(set_to_none=False): the same tensors, zeroed in place
    steps = w.records()[1]
    assert not any(s.get("grad_kept") for s in steps)  # zero_() and the backward: two changes
    assert not [f for f in w.report().findings if f.evidence.get("grads_never_cleared")]
    assert "exploding-gradient" not in w.report().codes


def test_the_default_zero_grad_makes_new_tensors() -> None:
    steps = _run("default").records()[1]
    assert not any(s.get("grad_kept") for s in steps)


def test_a_head_only_optimizer_over_a_trainable_backbone_is_not_blamed() -> None:
    """A linear probe whose optimizer holds the head only, the backbone left requires_grad=True:
    the backbone's .grad piles up (no optimizer clears it), but zero_grad() runs every step."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 16, generator=g)
    y = x[:, :4].argmax(1)
    torch.manual_seed(0)
    backbone, head = nn.Sequential(nn.Linear(16, 64), nn.ReLU()), nn.Linear(64, 4)
    model = nn.Sequential(backbone, head)
    opt = torch.optim.SGD(head.parameters(), lr=0.05)
    with gd.watch(model, opt) as w:
        for _ in range(60):
            idx = torch.randint(0, 256, (32,), generator=g)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    assert not any(s.get("grad_kept") for s in w.records()[1])
    assert not [f for f in w.report().findings if f.evidence.get("grads_never_cleared")]
