"""Watch on a model with complex parameters (S4D/LRU-style state-space layers keep their
eigenvalues or output maps complex). Trial D: recording stopped at step 1 with "linalg.vector_norm:
dtype should be complex"; the norms are now read on the (real, imaginary) pairs."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd


class ComplexMap(nn.Module):
    def __init__(self, n: int = 8) -> None:
        super().__init__()
        self.ssm = nn.Module()
        self.ssm.C = nn.Parameter(torch.randn(n, n, dtype=torch.cfloat))
        self.lin = nn.Linear(n, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin((x.to(torch.cfloat) @ self.ssm.C).real)


def test_complex_parameters_are_measured_like_their_real_pairs():
    torch.manual_seed(0)
    m = ComplexMap()
    opt = torch.optim.SGD(m.parameters(), lr=1e-2)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an internal error of watch is a warning: none here
        w = gd.watch(m, opt, update_every=1)
        for _ in range(3):
            loss = nn.functional.cross_entropy(m(x), y)
            opt.zero_grad()
            loss.backward()
            grad = m.ssm.C.grad.abs().square().sum().sqrt().item()  # the oracle: |z| summed over entries
            before = m.ssm.C.detach().clone()
            opt.step()
            w.step(loss)
        w.detach()
    _, steps = w.records()
    assert len(steps) == 3
    last = steps[-1]
    assert last["grad_norm"]["ssm"] == pytest.approx(grad, rel=1e-5)
    assert last["weight_norm"]["ssm"] == pytest.approx(before.abs().square().sum().sqrt().item(), rel=1e-5)  # before the step
    step = (m.ssm.C.detach() - before).abs().square().sum().sqrt().item()
    assert last["update_norm"]["ssm"] == pytest.approx(step, rel=1e-3)
