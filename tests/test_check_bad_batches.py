"""``check`` on a batch it cannot measure with says so in one line: an empty batch returned "no
findings" (the probe measured nothing), and NaN/Inf inputs were blamed on the model as a
``signal-explosion`` error. An additive attention mask's -inf is data, not a fault."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.mark.parametrize("x, said", [
    (torch.full((8, 16), float("nan")), "128 NaN/Inf value(s)"),
    (torch.randn(8, 16).index_fill_(1, torch.tensor([3]), float("inf")), "8 NaN/Inf value(s)"),
    (torch.randn(0, 16), "the example inputs are empty"),
    (torch.randn(8, 16, device="meta"), "on the meta device"),
])
def test_a_batch_check_cannot_measure_with_is_one_line(x, said):
    with pytest.raises(InputError, match="") as e:
        gd.check(_mlp(), x)
    assert said in str(e.value) and "\n" not in str(e.value)


def test_a_minus_inf_attention_mask_is_data():
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _mlp()

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.net(x) + mask.clamp(min=-1e4).mean() * 0

    mask = torch.zeros(8, 4).masked_fill_(torch.rand(8, 4) > 0.5, float("-inf"))
    assert gd.check(Masked(), {"x": torch.randn(8, 16), "mask": mask}).ok


@pytest.mark.parametrize("k", [-1, 2.5, True])
def test_a_bad_jacobian_k_is_one_line(k):
    with pytest.raises(InputError, match="jacobian_k must be an int >= 0"):
        gd.check(_mlp(), torch.randn(8, 16), jacobian_k=k)
