"""no-gradient names a module's own parameters as such (trial: XLNet's unused ``mask_emb`` read
as layer "transformer"; a bare parameter on the model read as "()")."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


class BareParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mask_emb = nn.Parameter(torch.zeros(1, 4))  # used only for masked inputs: never here
        self.lin = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def test_a_bare_parameter_without_gradient_is_named_as_the_models_own():
    torch.manual_seed(0)
    m = BareParameter()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        for _ in range(12):
            loss = m(torch.randn(3, 4)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    (f,) = [f for f in w.report().findings if f.code == "no-gradient"]
    assert "(the model's own parameters)" in f.message and "steps ()" not in f.message
