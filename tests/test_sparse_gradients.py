"""Sparse gradients (``nn.Embedding(sparse=True)``): statistics and watch read them as the dense
tensor they stand for."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.measure.stats import dense_values, nonfinite_counts, segment_index, tensor_sq_norms

pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks")


def test_sparse_values_norm_and_nonfinite_match_the_dense_tensor():
    """Duplicate indices are summed (coalesced), a NaN value makes the norm NaN, and the norm and
    the NaN/Inf count equal those of ``to_dense()``."""
    i = torch.tensor([[0, 0, 3, 5]])
    t = torch.sparse_coo_tensor(i, torch.tensor([1.0, 2.0, -4.0, float("nan")]), (6,))
    dense = t.to_dense()
    assert dense_values(t).numel() == 3  # coalesced: the duplicate index summed
    assert torch.isnan(tensor_sq_norms([t, torch.ones(2)])[0]) and torch.isnan(dense.norm())
    finite = torch.sparse_coo_tensor(i[:, :3], torch.tensor([1.0, 2.0, -4.0]), (6,))
    assert tensor_sq_norms([finite]).item() == pytest.approx(finite.to_dense().square().sum().item())
    assert nonfinite_counts([t], segment_index([1]), 1).tolist() == [1.0]


def test_watch_records_sparse_embedding_gradients_exactly():
    """watch's gradient norm of a sparse embedding equals the norm of its dense gradient, with no
    NaN/Inf counted and no recording failure."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(10, 4, sparse=True), nn.Linear(4, 1))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    expected = []
    with gd.watch(m, opt, weight_every=1, update_every=1) as w:
        for _ in range(3):
            loss = m(torch.tensor([1, 2, 2, 7])).sum()
            loss.backward()
            expected.append(m[0].weight.grad.to_dense().norm().item())
            opt.step()
            opt.zero_grad()
            w.step(loss)
    steps = w.records()[1]
    assert w.failed is None
    assert [s["grad_norm"]["0"] for s in steps] == pytest.approx(expected, rel=1e-5)
    assert all(s["nonfinite"]["0"] == 0 for s in steps)
