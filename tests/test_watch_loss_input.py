"""``w.step(loss)``: what it accepts, and how losses between two optimizer steps are combined."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


def test_losses_between_steps_are_still_averaged():
    """Several ``w.step(loss)`` calls before one optimizer step record their mean on that step;
    a one-element tensor counts as a scalar."""
    m = nn.Linear(2, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt) as w:
        w.step(1.0)
        w.step(torch.tensor([3.0]))
        m(torch.ones(1, 2)).sum().backward()
        opt.step()
    assert w.records()[1][0]["loss"] == pytest.approx(2.0)


@pytest.mark.parametrize("bad, match", [
    (torch.ones(4), r"real scalar.*shape \[4\]"),
    (torch.ones(1, dtype=torch.complex64), "real scalar"),
    ("0.5", "got str"),
    ([1.0], "got list"),
])
def test_w_step_rejects_non_scalar_losses_in_one_line(bad, match):
    """A loss that is not a real scalar is a one-line ``GraddoctorError`` naming what was given."""
    m = nn.Linear(2, 1)
    with gd.watch(m) as w, pytest.raises(gd.GraddoctorError, match=match) as e:
        w.step(bad)
    assert "\n" not in str(e.value)
