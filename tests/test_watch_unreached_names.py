"""no-gradient names a module's own parameters as such (a bare parameter on the model read as
"()"), and tells parameters the forward never reads (trial: XLNet's ``mask_emb`` without
``target_mapping``, ESM's ``contact_head`` under a masked-LM loss: unused, not cut off) with an info,
not a warning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


class BareParameter(nn.Module):
    def __init__(self, use: str) -> None:
        super().__init__()
        self.mask_emb = nn.Parameter(torch.ones(1, 4))
        self.lin = nn.Linear(4, 2)
        self.head = nn.Linear(4, 2)  # another task's head: never called here
        self.use = use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use == "detach":
            x = x * self.mask_emb.detach()
        elif self.use == "item":
            x = x * self.mask_emb[0, 0].item()
        return self.lin(x)


def _no_gradient(use: str) -> list:
    torch.manual_seed(0)
    m = BareParameter(use)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        for _ in range(12):
            loss = m(torch.randn(3, 4)).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return [f for f in w.report().findings if f.code == "no-gradient"]


@pytest.mark.parametrize("use", ["detach", "item"])
def test_a_bare_parameter_cut_off_is_named_as_the_models_own(use):
    found = _no_gradient(use)
    (f,) = [f for f in found if f.severity == "warning"]
    assert f.layers == [""] and "(the model's own parameters)" in f.message and "steps ()" not in f.message
    (unused,) = [f for f in found if f.severity == "info"]  # the other task's head, never called
    assert unused.layers == ["head"] and "never used" in unused.message


def test_parameters_the_forward_never_reads_are_an_info_not_a_warning():
    (f,) = _no_gradient("never")
    assert f.severity == "info" and sorted(f.layers) == ["", "head"]
    assert f.evidence["unused_by_forward"] == 2
