"""Plots on recorded runs (tests/runfixtures.py): the numbers drawn are the numbers recorded,
NaN and frozen layers are marked, and every figure's PNG has real content."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

from graddoctor import runlog
from graddoctor.errors import InputError
from graddoctor.present import plots as plots
from graddoctor.report import Finding, Report
from runfixtures import from_jsonl, record_run, tiny_model, to_jsonl

NAN_AT = 10


@pytest.fixture(scope="module")
def run():
    """6-layer sigmoid MLP, layer "2" frozen, a NaN gradient and loss at step 10."""
    return record_run(frozen=("2",), nan_at=NAN_AT)


@pytest.fixture(scope="module")
def run_json(run):
    """The same run after a JSONL round trip: non-finite numbers are the strings "nan"/"inf"."""
    return from_jsonl(to_jsonl(*run))


@pytest.fixture(scope="module")
def relu_run():
    """ReLU MLP whose first hidden units are pushed dead by a large negative bias."""
    model = tiny_model(act=nn.ReLU)
    with torch.no_grad():
        model[0].bias[:8] = -50.0
    return record_run(model, n_steps=8)


def _report(run, findings=()):
    return Report(list(findings), "watch", {"meta": run[0], "steps": run[1]})


def _colored_fraction(png: bytes) -> float:
    """Fraction of pixels with a clear hue (axes, text and grids are grey; data is coloured)."""
    img = imread(io.BytesIO(png))[..., :3]
    return float(((img.max(axis=2) - img.min(axis=2)) > 0.2).mean())


def test_matrix_tells_frozen_from_nonfinite(run_json):
    meta, steps = run_json
    names = plots.layer_names(meta, steps)
    ids, values, bad = plots.matrix(steps, "grad_norm", names)
    assert names == ["0", "2", "4", "6", "8", "10"]
    assert ids.tolist() == list(range(1, 25))
    assert steps[NAN_AT - 1]["grad_norm"]["0"] == "nan"  # strings after the JSON round trip
    assert bad[0].tolist() == [s == NAN_AT for s in range(1, 25)]
    assert not bad[1].any() and np.isnan(values[1]).all()  # frozen: null, not non-finite
    assert values[5, 0] == pytest.approx(steps[0]["grad_norm"]["10"])


@pytest.mark.parametrize("which", ["run", "run_json"])
def test_gradient_flow_draws_the_recorded_norms(which, request):
    meta, steps = request.getfixturevalue(which)
    fig = plots.gradient_flow((meta, steps), steps=[1, 24])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"step 1", "step 24"}
    y = lines["step 24"].get_ydata()
    expected = [runlog.as_float(steps[23]["grad_norm"][n]) for n in ["0", "2", "4", "6", "8", "10"]]
    np.testing.assert_allclose(y[[0, 2, 3, 4, 5]], np.array(expected)[[0, 2, 3, 4, 5]])
    assert math.isnan(y[1])  # frozen layer: no point
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert marks == {"none (frozen / zero)": [1.0]}
    # the NaN step marks layer 0 as non-finite
    fig = plots.gradient_flow((meta, steps), steps=NAN_AT)
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in fig.axes[0].collections}
    assert marks["NaN/Inf"] == [0.0]


def test_grad_heatmap_values_mask_and_nan_overlay(run_json):
    fig = plots.grad_heatmap(run_json)
    img, overlay = fig.axes[0].get_images()
    data = img.get_array()
    steps = run_json[1]
    assert data.shape == (6, 24)
    assert data.mask[1].all()  # frozen row
    assert data.mask[0, NAN_AT - 1] and not data.mask[0, 0]
    assert data[4, 3] == pytest.approx(math.log10(steps[3]["grad_norm"]["8"]))
    red = overlay.get_array()
    assert (~red.mask).sum() == 1 and not red.mask[0, NAN_AT - 1]


def test_grad_heatmap_downsamples_long_runs_keeping_nan(run):
    fig = plots.grad_heatmap(run, max_steps=5)
    img, overlay = fig.axes[0].get_images()
    assert img.get_array().shape == (6, 4)  # 24 steps shown every 5th, in 4 columns
    assert (~overlay.get_array().mask).sum() == 1  # step 10 is not a shown column, its NaN is


def test_update_ratio_and_reference_line(run):
    fig = plots.update_ratio(run, steps=8)
    ax = fig.axes[0]
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "step 8"]
    assert line.get_ydata()[5] == pytest.approx(run[1][7]["update_ratio"]["10"])
    assert any(ln.get_ydata()[0] == 1e-3 for ln in ax.get_lines() if ln.get_linestyle() == "--")


def test_dead_saturated_bars_are_the_recorded_fractions(relu_run):
    fig = plots.dead_saturated(relu_run)
    ax = fig.axes[0]
    last = relu_run[1][-1]["act"]
    dead = [p.get_height() for p in ax.patches[: len(last)]]
    assert dead == pytest.approx([last[s]["dead_frac"] for s in last])
    assert dead[0] >= 0.5  # 8 of 16 first-layer units were pushed dead


def test_activation_histograms_approximation_and_recorded_hist(run):
    fig = plots.activation_histograms(run)
    assert "approximated" in fig._suptitle.get_text()
    assert len(fig.axes) == 5
    # a sigmoid site: the truncated approximation puts no mass below 0
    ax = fig.axes[0]
    img = ax.get_images()[0]
    lo, hi = img.get_extent()[2:]
    below = np.linspace(lo, hi, img.get_array().shape[0]) < 0
    assert lo < 0 and img.get_array()[below].max() == 0
    # recorded histograms are used as they are, negative values included
    meta, steps = run
    hsteps = [dict(s, act={"1": {"mean": 0.0, "std": 1.0,
                                 "hist": {"lo": -2.0, "hi": 2.0, "counts": [0, 10, 0, 0]}}}) for s in steps[:3]]
    fig = plots.activation_histograms((meta, hsteps), sites=["1"], bins=4)
    assert "approximated" not in fig._suptitle.get_text()
    col = np.expm1(fig.axes[0].get_images()[0].get_array()[:, 0])
    assert col.tolist() == pytest.approx([0, 1, 0, 0])  # all mass in [-1, 0)


def test_loss_curve_marks_findings_and_nan(run):
    finding = Finding("non-finite", "error", "NaN gradient", ["0"], step=NAN_AT)
    fig = plots.loss_curve(_report(run, [finding, Finding("poor-init", "warning", "static")]))
    ax = fig.axes[0]
    vlines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert [ln.get_xdata()[0] for ln in vlines] == [NAN_AT]
    assert [t.get_text().strip() for t in ax.texts] == ["non-finite"]
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert marks == {"NaN/Inf loss": [float(NAN_AT)]}


def test_probe_profile_reads_check_data():
    probe = {"layers": ["0", "2", "4"], "kinds": ["linear"] * 3, "grad_rms": [1e-9, 1e-5, 1e-1],
             "act_var": [0.1, 0.01, "nan"], "time_grad": [1e-6, 1e-3, 1.0]}
    fig = plots.probe_profile(Report([], "check", {"probe": probe}))
    ax, ax_time = fig.axes
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()}
    assert set(lines) == {"grad_rms", "act_var"}
    np.testing.assert_allclose(lines["grad_rms"], [1e-9, 1e-5, 1e-1])
    assert ax_time.get_lines()[0].get_ydata().tolist() == [1e-6, 1e-3, 1.0]


def test_every_figure_png_has_content(run_json, relu_run):
    report = _report(run_json, [Finding("non-finite", "error", "NaN", ["0"], step=NAN_AT)])
    figs = plots.figures(report)
    figs["dead_saturated"] = plots.dead_saturated(relu_run)  # the sigmoid run has no dead units
    probe = {"layers": ["0", "2", "4"], "grad_rms": [1e-9, 1e-5, 1e-1], "act_var": [0.1, 0.01, 0.2]}
    figs["probe_profile"] = plots.probe_profile(Report([], "check", {"probe": probe}))
    assert set(figs) == set(plots.WATCH_FIGURES) | {"probe_profile"}
    blank = _colored_fraction(plots.to_png(plots.gradient_flow(({"layers": []}, []))))
    for name, fig in figs.items():
        png = plots.to_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        img = imread(io.BytesIO(png))
        assert img.std() > 0.05, name
        assert _colored_fraction(png) > max(0.003, 3 * blank), name


def test_bad_inputs_say_what_to_do(run):
    with pytest.raises(InputError, match="probe_profile"):
        plots.gradient_flow(Report([], "check", {"probe": {}}))
    with pytest.raises(InputError, match="not in the run"):
        plots.gradient_flow(run, steps=999)
    with pytest.raises(InputError, match="unknown activation sites"):
        plots.activation_histograms(run, sites=["nope"])
    with pytest.raises(InputError, match="w.records"):
        plots.loss_curve(42)


def test_empty_run_gives_a_placeholder_not_an_error():
    fig = plots.grad_heatmap(({"layers": []}, []))
    assert "no gradient norms" in fig.axes[0].texts[0].get_text()


def test_activation_histograms_put_recorded_zeros_at_zero(relu_run):
    meta, steps = relu_run
    fig = plots.activation_histograms(relu_run, sites=["1"])
    img = fig.axes[0].get_images()[0]
    density = np.expm1(img.get_array())  # bins x sampled steps, each column sums to 1
    lo, hi = img.get_extent()[2:]
    centers = np.linspace(lo, hi, density.shape[0])
    zero_bin = int(np.argmin(np.abs(centers)))
    recorded = [s["act"]["1"]["zero_frac"] for s in steps if "act" in s]
    assert recorded[0] >= 0.5
    np.testing.assert_allclose(density.sum(axis=0), 1.0, rtol=1e-6)
    assert (density[zero_bin] >= np.array(recorded) - 1e-6).all()
    assert density[centers < centers[zero_bin]].sum() == 0  # ReLU outputs: nothing below zero


def test_deep_models_keep_figures_bounded():
    names = [f"blocks.{i}.attn.proj_with_a_long_name" for i in range(500)]
    meta = {"layers": [{"name": n} for n in names]}
    steps = [{"step": s, "loss": 1.0, "grad_norm": {n: 1e-3 * (i + 1) for i, n in enumerate(names)}}
             for s in range(1, 4)]
    flow, heat = plots.gradient_flow((meta, steps)), plots.grad_heatmap((meta, steps))
    assert max(flow.get_size_inches()) <= 16 and max(heat.get_size_inches()) <= 16
    assert len(flow.axes[0].get_xticks()) <= 30 and len(heat.axes[0].get_yticks()) <= 40
    assert all(len(t.get_text()) <= 24 for t in flow.axes[0].get_xticklabels())
