"""Watch's training-time ``poor-init`` (diagnose/training/init_loss.py): weights the init audit at
the first forward reads as off scale, and a loss still above a uniform guess after 100 steps.
Plain watch was silent on Transformers drawn at ``initializer_range`` 0.5-1.0 that ended worse
than a constant predictor (their loss fell from 4x ln V, so it read as learning). Controls: the
stock model, a model drawn off scale that learns anyway, and a regression whose MSE stays far
above ln(outputs) with a sound init."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from test_autofix_attention_init import V, _batch


def _gpt2(initializer_range: float):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=32,
                                      initializer_range=initializer_range))


def _watch(model, batches, loss_fn, steps: int = 120) -> tuple[list[float], gd.Report]:
    torch.set_num_threads(1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, opt) as w:
            for _ in range(steps):
                loss = loss_fn(model, next(batches))
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
                losses.append(loss.item())
    return losses, w.report()


def _lm_batches():
    g = torch.Generator().manual_seed(123)
    while True:
        yield _batch(g)


@pytest.mark.parametrize("ir, flagged", [(1.0, True), (0.02, False)])
def test_a_gpt2_drawn_large_that_stays_worse_than_a_guess_is_poor_init(ir, flagged):
    losses, report = _watch(_gpt2(ir), _lm_batches(), lambda m, b: m(**b).loss)
    end = sum(losses[-20:]) / 20
    poor = [f for f in report.findings if f.code == "poor-init"]
    assert bool(poor) == flagged, (ir, end, [(f.code, f.message) for f in report.findings])
    assert (end >= math.log(V)) == flagged  # the condition itself, measured
    if flagged:
        (f,) = poor
        assert f.severity == "error" and "uniform guess" in f.message and f.remedies
        assert f.evidence["output_width"] == V and f.evidence["loss_first"] > 3 * math.log(V)
    else:
        assert report.data["meta"]["config"]["output_width"] == V


def test_an_init_read_off_scale_that_learns_below_the_guess_is_left_alone():
    from graddoctor.diagnose.training.init_loss import init_loss

    audit = [{"code": "poor-init", "message": "off scale", "layers": ["0"], "remedies": ["he-init"]}]
    meta = {"config": {"output_width": 10, "weight_scale": 5.0, "init_audit": audit}}
    falls = [{"step": t, "loss": 30.0 * 0.97 ** t} for t in range(1, 201)]  # 30 -> 0.07: it learns
    assert init_loss(meta, falls) == []
    stays = [{"step": t, "loss": 30.0 - 0.1 * t} for t in range(1, 201)]  # 30 -> 10: above ln 10
    assert [f.code for f in init_loss(meta, stays)] == ["poor-init"]
    assert init_loss(meta, stays[:99]) == []  # too early to judge
    assert init_loss({"config": {**meta["config"], "init_audit": []}}, stays) == []  # a sound init
    assert init_loss({"config": {**meta["config"], "output_width": 1}}, stays) == []  # one output: no guess
    # drawn small (PyTorch's default 0.58 on a deep ReLU MLP reads off scale): the loss level says
    # nothing of it - a VAE or an MSE regression sits far above ln K while it learns
    assert init_loss({"config": {**meta["config"], "weight_scale": 0.58}}, stays) == []


@pytest.mark.parametrize("depth", [2, 6])
def test_a_regression_far_above_ln_outputs_is_not_poor_init(depth):
    """A 6-layer ReLU MLP at PyTorch's default init reads off scale (too small) and was an error."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), *[m for _ in range(depth - 2) for m in (nn.Linear(64, 64), nn.ReLU())],
                        nn.Linear(64, 3))
    x = torch.randn(4096, 8)
    y = 100.0 * x[:, :3] + 50.0  # targets far from 0: MSE stays above ln 3 for a long while

    def batches():
        g = torch.Generator().manual_seed(0)
        while True:
            i = torch.randint(0, len(x), (64,), generator=g)
            yield x[i], y[i]

    losses, report = _watch(net, batches(), lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]))
    assert sum(losses[-20:]) / 20 > math.log(3)
    assert "poor-init" not in {f.code for f in report.findings}
    assert (report.data["meta"]["config"]["init_audit"] != []) == (depth == 6)  # the audit reads it
