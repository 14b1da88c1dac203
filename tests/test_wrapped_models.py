"""check and its init probe see through model wrappers (``torch.compile``, ``nn.DataParallel``):
the same findings, layer names and measurements as on the plain model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd


@pytest.mark.parametrize("wrap", [torch.compile, nn.DataParallel], ids=["compile", "DataParallel"])
def test_check_and_probe_see_through_compile_and_data_parallel(wrap):
    """A wrapped sigmoid MLP gets the plain model's finding on layer "1", the plain layer names
    in the probe and the same probed gradient RMS."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2))
    x = torch.randn(4, 8)
    plain = gd.check(net, x)
    wrapped = gd.check(wrap(net), x)
    assert wrapped.codes == plain.codes == {"saturating-hidden-activation"}
    assert [f.layers for f in wrapped.findings] == [["1"]]
    assert wrapped.data["probe"]["layers"] == plain.data["probe"]["layers"] == ["0", "2"]
    assert wrapped.data["probe"]["grad_rms"] == pytest.approx(plain.data["probe"]["grad_rms"])
