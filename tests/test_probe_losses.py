"""The init probe's loss (``gd.check(..., target=...)``): which loss it picks for the output and
target shapes, and one-line errors when the loss cannot be computed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


def _probed(model: nn.Module, x: torch.Tensor, target) -> dict:
    return gd.check(model, x, target=target).data["probe"]


def test_probe_cross_entropy_on_sequence_logits_flattens_time():
    """Logits [N, T, C] with class targets [N, T] give cross-entropy over the N*T positions;
    PyTorch's own layout [N, C, T] with [N, T] still goes straight to cross_entropy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(11, 8), nn.Linear(8, 11))
    tokens, target = torch.randint(0, 11, (2, 6)), torch.randint(0, 11, (2, 6))
    p = _probed(net, tokens, target)
    expected = nn.functional.cross_entropy(net(tokens).reshape(-1, 11), target.reshape(-1))
    assert p["loss_source"] == "cross_entropy"
    assert p["loss"] == pytest.approx(expected.item(), rel=1e-6)
    class_first = nn.Sequential(nn.Conv1d(3, 5, 1))
    x, t = torch.randn(2, 3, 7), torch.randint(0, 5, (2, 7))
    p = _probed(class_first, x, t)
    assert p["loss"] == pytest.approx(nn.functional.cross_entropy(class_first(x), t).item(), rel=1e-6)


def test_probe_accepts_array_like_targets():
    """A list of class indices is a class target (cross-entropy); a float target holding as many
    values as the output in another shape ([6] vs [2, 3]) gives the MSE loss."""
    torch.manual_seed(0)
    net = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    p = _probed(net, x, [0, 2])
    assert p["loss"] == pytest.approx(
        nn.functional.cross_entropy(net(x), torch.tensor([0, 2])).item(), rel=1e-6)
    p = _probed(net, x, torch.zeros(6, dtype=torch.float64))  # [6] vs [2, 3]
    assert p["loss_source"] == "mse" and p["loss"] == pytest.approx(net(x).pow(2).mean().item(), rel=1e-6)


@pytest.mark.parametrize("target, loss_fn, match", [
    (object(), None, "target must be a tensor.*got object"),
    (torch.tensor([0, 1, 2, 0]), None, r"cross-entropy loss failed on output \(3, 5\).*target \(4,\)"),
    (torch.zeros(3, 4), None, r"MSE loss failed on output \(3, 5\).*target \(3, 4\)"),
    (torch.zeros(3), lambda y, t: y @ t, r"loss_fn loss failed on output \(3, 5\).*target \(3,\)"),
])
def test_probe_loss_failures_are_one_line_input_errors(target, loss_fn, match):
    """A target or loss_fn that cannot make a loss is a one-line ``GraddoctorError`` naming the
    loss and both shapes."""
    with pytest.raises(gd.GraddoctorError, match=match) as e:
        gd.check(nn.Linear(2, 5), torch.randn(3, 2), target=target, loss_fn=loss_fn)
    assert "\n" not in str(e.value)
