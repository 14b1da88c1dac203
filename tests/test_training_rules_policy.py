"""The severity policy and the exploding/plateau changes of issue 14, on real runs where the
behaviour can be produced in seconds and on records with the issue's numbers otherwise."""

from __future__ import annotations

import math

import torch

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.gradients import exploding_gradient
from graddoctor.diagnose.training.loss import loss_plateau
from graddoctor.diagnose.training.policy import NO_CAUSE
from graddoctor.train import fit, sampled_batches


def _run(model, x, y, opt, steps=100):
    with gd.watch(model, optimizer=opt, example_inputs=x[:32]) as w:
        fit(model, opt, sampled_batches(x, y, 32, seed=0), steps=steps, on_step=lambda s, loss: w.step(loss))
        return w.records()


def _xy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=g)
    y = x[:, :4].argmax(1)
    return x, y


def test_saturated_tanh_with_a_loss_that_never_moves_is_an_error():
    x, y = _xy()
    net = zoo.mlp(depth=6, width=64, in_features=16, out_features=4, activation="tanh", init=1.0,
                  seed=0)
    rep = gd.Report(training_findings(*_run(net, x, y, torch.optim.SGD(net.parameters(), lr=1e-4))))
    assert "saturated-activation" in rep.codes and not rep.ok  # watch-report exits non-zero
    assert all(f.severity == "error" for f in rep.findings if f.code in ("saturated-activation", "loss-plateau"))


def test_a_plateau_with_healthy_gradients_names_the_data_and_claims_no_gradient_fault():
    # records of a run at chance whose gradients are balanced (what random labels look like;
    # the realistic suite's a-mlp4-random-labels and b-gru-random-labels are the real runs)
    meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(5)]}
    steps = [{"step": t, "loss": 2.3 + 0.01 * math.sin(t), "grad_norm": {str(i): 0.05 for i in range(5)},
              "weight_norm": {str(i): 4.0 for i in range(5)}} for t in range(1, 101)]
    fs = training_findings(meta, steps)
    codes = {f.code for f in fs}
    assert "loss-plateau" in codes and not codes & {"vanishing-gradient", "exploding-gradient"}
    f = next(f for f in fs if f.code == "loss-plateau")
    assert f.severity == "warning" and NO_CAUSE in f.message and f.remedies == ["lr-find"]


def _lstm_like(norms, losses):
    meta = {"layers": [{"name": n, "kind": k} for n, k in (("lstm", "rnn"), ("head", "linear"))]}
    return meta, [{"step": t + 1, "loss": lo, "grad_norm": {"lstm": g, "head": g / 3},
                   "weight_norm": {"lstm": 5.0, "head": 2.0}} for t, (g, lo) in enumerate(zip(norms, losses))]


def test_a_tiny_first_norm_that_settles_is_not_an_explosion():
    # issue 14: first norm 0.04, ~4.5 within 20 steps, loss held at log(10) then falling
    norms = [0.04 * (4.5 / 0.04) ** min(1.0, t / 20) for t in range(120)]
    losses = [math.log(10) + 0.01 * math.sin(t) if t < 30 else math.log(10) * 0.99 ** (t - 30) for t in range(120)]
    assert exploding_gradient(*_lstm_like(norms, losses)) == []


def test_the_same_growth_with_the_loss_rising_is_an_explosion():
    norms = [0.04 * 10 ** (t / 10) for t in range(40)]
    losses = [2.3 * (1 + 0.05 * t) for t in range(40)]
    f = exploding_gradient(*_lstm_like(norms, losses))[0]
    assert f.code == "exploding-gradient" and f.evidence["growth_orders"] >= 2


def test_slow_but_steady_and_converged_runs_are_not_plateaus():
    slow = [{"step": t, "loss": 2.35 - 0.0015 * t + 0.01 * math.sin(t)} for t in range(1, 101)]
    assert loss_plateau({"layers": []}, slow) == []
    flat = [{"step": t, "loss": 2.3 + 0.01 * math.sin(t)} for t in range(1, 101)]
    assert [f.code for f in loss_plateau({"layers": []}, flat)] == ["loss-plateau"]
