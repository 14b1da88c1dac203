"""graddoctor.measure.stats against plain-torch oracles."""

from __future__ import annotations

import math

import pytest
import torch

from graddoctor import kinds
from graddoctor.measure import stats
from graddoctor.measure.norms import TensorNorms


def test_layer_sq_norms_match_per_tensor_norms():
    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g) * 1e-6,
          torch.randn(2, 2, 2, generator=g) * 1e3, torch.randn(4, generator=g)]
    idx = stats.segment_index([2, 0, 2])
    got = stats.layer_sq_norms(ts, idx, 3).sqrt()
    want = [math.sqrt(ts[0].norm() ** 2 + ts[1].norm() ** 2), 0.0,
            math.sqrt(ts[2].norm() ** 2 + ts[3].norm() ** 2)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)


def test_layer_sq_norms_low_precision_in_float32():
    t = torch.randn(1000, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    got = stats.layer_sq_norms([t], stats.segment_index([1]), 1).sqrt().item()
    assert got == pytest.approx(t.float().norm().item(), rel=1e-6)


def test_layer_norms_none_for_empty_group():
    assert stats.layer_norms([[None], [torch.tensor([3.0, 4.0])]]) == [None, pytest.approx(5.0)]


def test_nonfinite_counts():
    a = torch.tensor([1.0, math.nan, math.inf, -math.inf])
    b = torch.tensor([0.0, 2.0])
    got = stats.nonfinite_counts([a, b], stats.segment_index([1, 1]), 2)
    assert got.tolist() == [3.0, 0.0]


def test_update_sq_norms_exact():
    before = [torch.randn(3, 3), torch.randn(3)]
    after = [b + 0.01 * torch.randn_like(b) for b in before]
    got = stats.update_sq_norms(after, before, stats.segment_index([2]), 1).sqrt().item()
    want = math.sqrt(sum(((a - b).norm() ** 2).item() for a, b in zip(after, before)))
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("kind,x,want", [
    ("tanh", [0.0, 0.5, 0.995, -0.999], 0.5),
    ("sigmoid", [0.005, 0.5, 0.995, 0.2], 0.5),
    ("hardtanh", [-1.0, 0.3, 1.0, 0.99], 0.5),
    ("relu", [0.0, 1.0], None),
])
def test_saturated_mask(kind, x, want):
    """The saturation test the activation statistics count (``kinds.saturated_mask``)."""
    m = kinds.saturated_mask(torch.tensor(x), kind)
    if want is None:
        assert m is None
    else:
        assert m.float().mean().item() == pytest.approx(want)


def _moments(m: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """``MOMENTS`` of one output from ``site_moments`` (as the activation sampler adds them)."""
    total = m["sum"] if "sum" in m else m["units"].sum()
    sat = m.get("sat", torch.tensor(0))
    return torch.stack([torch.tensor(float(n)), total, m["norm"] ** 2, n - m["nnz"].float(), sat.float()])


@pytest.mark.parametrize("kind,make", [
    ("relu", torch.relu),
    ("leaky_relu", lambda x: torch.nn.functional.leaky_relu(x, 0.01)),
    ("tanh", lambda x: torch.tanh(3 * x)),
    ("sigmoid", lambda x: torch.sigmoid(4 * x)),
])
def test_site_moments_and_stats_match_torch(kind, make):
    x = make(torch.randn(16, 4, 3, 3, generator=torch.Generator().manual_seed(2)))
    x[:, 2] = 0.0  # one channel never active (a dead unit for the ReLU family)
    m = stats.site_moments(x, kind, 1)
    assert stats.MOMENTS == ("count", "sum", "sumsq", "zeros", "saturated")
    mean, std, zero, sat = stats.moments_to_stats(_moments(m, x.numel())).tolist()
    assert mean == pytest.approx(x.mean().item(), rel=1e-5, abs=1e-7)
    assert std == pytest.approx(x.std(unbiased=False).item(), rel=1e-4)
    assert zero == pytest.approx((x == 0).float().mean().item())
    want_sat = {"tanh": x.abs() > 0.99, "sigmoid": (x < 0.01) | (x > 0.99)}.get(kind)
    assert sat == pytest.approx(0.0 if want_sat is None else want_sat.float().mean().item())
    if kind in ("relu", "leaky_relu"):  # per channel: active (> 0) somewhere in the batch
        active = (x > 0).any(dim=0).any(dim=-1).any(dim=-1)
        assert ((m["units"] > 0) == active).all() and not active[2]
    else:
        assert "units" not in m
    halves = [stats.site_moments(h, kind, 1) for h in (x[:8], x[8:])]  # moments add over calls
    both = _moments(halves[0], x[:8].numel()) + _moments(halves[1], x[8:].numel())
    assert torch.allclose(stats.moments_to_stats(both), stats.moments_to_stats(_moments(m, x.numel())),
                          rtol=1e-5, atol=1e-7)


def test_dead_fractions_match_the_window_of_masks():
    g = torch.Generator().manual_seed(4)
    masks = torch.rand(12, 50, generator=g) < 0.1  # [samples, units]: active in a sample
    site = torch.repeat_interleave(torch.tensor([0, 2, 3]), torch.tensor([20, 25, 5]))
    site_units = torch.tensor([20.0, 0.0, 25.0, 5.0])
    window = 3
    for sample in range(1, len(masks) + 1):
        seen = masks[:sample]
        numbered = torch.arange(1, sample + 1)[:, None].expand_as(seen)
        last = torch.where(seen, numbered, -(2**62)).amax(dim=0)  # last sample each unit was active
        dead = ~seen[-window:].any(dim=0)
        want = [dead[site == s].float().mean().item() for s in range(4)]
        got = stats.dead_fractions(last, sample, window, site, site_units).tolist()
        assert math.isnan(got[1]) and math.isnan(want[1])
        assert got[:1] + got[2:] == pytest.approx(want[:1] + want[2:])


def test_unit_dim():
    assert stats.unit_dim(torch.zeros(2, 3, 4, 4), True) == 1
    assert stats.unit_dim(torch.zeros(2, 5, 7), False) == 2
    assert stats.unit_dim(torch.zeros(5), True) == 0 and stats.unit_dim(torch.zeros(()), False) == 0


def test_tensor_norms_into_a_row_match_per_tensor_norms():
    g = torch.Generator().manual_seed(3)
    ts = [torch.randn(80, 80, generator=g), torch.randn(7, generator=g) * 1e-4,
          torch.randn(3, 3, 3, generator=g).transpose(0, 2), torch.zeros(0)]
    out = stats.tensor_norms(ts, out=torch.full((4,), -1.0))
    assert out.tolist() == pytest.approx([t.double().norm().item() for t in ts], rel=1e-6)
    bf = [t.to(torch.bfloat16) for t in ts]
    assert stats.tensor_norms(bf).tolist() == pytest.approx([t.float().norm().item() for t in bf],
                                                            rel=1e-5)


def test_tensor_norms_groups_match_per_tensor_norms():
    """Fused norms for large/unique tensors, stack + norm per group of small same-shape ones."""
    g = torch.Generator().manual_seed(3)
    shapes = [(300, 300), (7,), (3, 3), (7,), (7,), (3, 3), (7,), (0,), (0,), (0,), (0,), (9,)]
    ts = [torch.randn(*s, generator=g) * 10.0 ** (i - 6) for i, s in enumerate(shapes)]
    ts[2] = ts[2].t()  # non-contiguous
    plan = TensorNorms(ts)
    assert plan.order == [0, 2, 5, 11, 1, 3, 4, 6, 7, 8, 9, 10]  # fused, then the (7,) and (0,) groups
    got = plan.ordered([ts[i] for i in plan.order], torch.full((len(ts),), -1.0))
    want = [ts[i].double().norm().item() for i in plan.order]
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    bad = [t.clone() for t in ts]
    bad[3][0] = math.inf
    got = plan.ordered([bad[i] for i in plan.order], torch.empty(len(ts)))
    assert math.isinf(got[plan.order.index(3)]) and math.isfinite(got[plan.order.index(1)])


def test_round_significant_keeps_eight_digits_and_short_repr():
    x = torch.tensor([0.123456789123, 98765.43219, 3.3e-7, 0.0, math.inf, 1e-300, 2.5e25],
                     dtype=torch.float64)
    got = stats.round_significant(x, 8).tolist()
    assert got[:3] == [0.12345679, 98765.432, 3.3e-07]
    assert got[3] == 0.0 and got[4] == math.inf and got[5:] == [1e-300, 2.5e25]
    assert all(len(repr(v)) <= 12 for v in got[:3])
