"""Activation histograms: the pure binning against torch.histc, the sampler's recorded counts
against torch.histc on the same outputs by hand, a sigmoid pinned at its bounds (mass in the end
bins) against a healthy control, the figure drawn from them, and the TensorBoard histograms."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.measure.monitor.activations import HIST_BINS
from graddoctor.measure.stats import histogram_counts, histogram_range


@pytest.mark.parametrize("bins", [1, 7, 32])
def test_histogram_counts_equal_histc(bins):
    x = torch.rand(10_000, generator=torch.Generator().manual_seed(bins)) * 3 - 1
    lo_hi = torch.tensor([-1.0, 2.0])
    got = histogram_counts(x, lo_hi, bins)
    assert torch.equal(got, torch.histc(x, bins, -1.0, 2.0))


def test_histogram_counts_edges_outside_and_nan():
    x = torch.tensor([-5.0, 0.0, 1.0, 7.0, float("nan"), float("inf"), float("-inf")])
    got = histogram_counts(x, torch.tensor([0.0, 1.0]), 4).tolist()
    assert got == [3.0, 0.0, 0.0, 3.0]  # below/at lo and -inf | at/above hi and +inf; NaN not counted


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_histogram_counts_other_dtypes_bin_their_float32_values(dtype):
    x = (torch.randn(5_000, generator=torch.Generator().manual_seed(0)) * 2).to(dtype)
    x[::97] = float("nan")
    v = x.float()
    finite = v[~v.isnan()].clamp(-1.0, 1.0)
    got = histogram_counts(x, torch.tensor([-1.0, 1.0]), 16)
    assert torch.equal(got, torch.histc(finite, 16, -1.0, 1.0))


def test_histogram_range_uses_finite_bounds_else_data():
    x = torch.tensor([0.2, 3.0, float("nan")])
    assert histogram_range(x, (0.0, 1.0)).tolist() == [0.0, 1.0]
    assert histogram_range(x, (0.0, float("inf"))).tolist() == [0.0, 3.75]
    assert histogram_range(x, (float("-inf"), float("inf"))).tolist() == pytest.approx([0.15, 3.75])


def sigmoid_net(scale: float) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Sigmoid(), nn.Linear(32, 1))
    with torch.no_grad():
        net[0].weight.mul_(scale)
    return net


def run(net, steps=6, **kw):
    outs = []
    handle = net[1].register_forward_hook(lambda m, a, out: outs.append(out.detach().clone()))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    with gd.watch(net, opt, activation_every=2, flush_every=4, **kw) as w:
        for _ in range(steps):
            loss = net(torch.randn(64, 8, generator=g)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    handle.remove()
    return w, outs


def end_mass(hist: dict) -> float:
    c = hist["counts"]
    return (c[0] + c[-1]) / sum(c)


def test_recorded_counts_equal_histc_by_hand_and_saturation_shows_in_end_bins():
    w, outs = run(sigmoid_net(60.0))
    meta, steps = w.records()
    sampled = [s for s in steps if "act" in s]
    assert len(sampled) >= 3
    for s in sampled:
        hist = s["act"]["1"]["hist"]
        assert (hist["lo"], hist["hi"]) == (0.0, 1.0) and len(hist["counts"]) == HIST_BINS
        by_hand = torch.histc(outs[s["step"]], HIST_BINS, 0.0, 1.0)  # outs[0] is the mapping forward
        assert hist["counts"] == by_hand.long().tolist()
        assert end_mass(hist) > 0.8, end_mass(hist)


def test_healthy_sigmoid_keeps_its_mass_inside():
    w, _ = run(sigmoid_net(0.5))
    hists = [s["act"]["1"]["hist"] for s in w.records()[1] if "act" in s]
    assert hists and max(end_mass(h) for h in hists) < 0.05


def test_figure_is_drawn_from_the_histograms():
    pytest.importorskip("matplotlib")
    from graddoctor.present.activation_figures import activation_histograms

    w, _ = run(sigmoid_net(60.0))
    fig = activation_histograms(w.records(), sites=["1"])
    assert "approximated" not in fig._suptitle.get_text()
    import numpy as np

    density = np.expm1(np.asarray(fig.axes[0].images[0].get_array()))  # bins x steps; row 0 = lo
    assert (density[0] + density[-1]).min() > 0.8 * density.sum(axis=0).max()


def test_tensorboard_gets_histograms(tmp_path):
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    run(sigmoid_net(60.0), log_dir=tmp_path, sinks=["jsonl", "tensorboard"])
    ea = ea_mod.EventAccumulator(str(tmp_path), size_guidance={"histograms": 0})
    ea.Reload()
    assert "act_hist/1" in ea.Tags()["histograms"]
    events = ea.Histograms("act_hist/1")
    assert len(events) >= 3 and events[0].histogram_value.num == 64 * 32
