"""Training-time rules: each on records that must trigger it and on a control that must not.

Synthetic records (fast, exact) test the thresholds and the exclusions; short
real runs under ``gd.watch`` test each rule on a model that physically has the
fault and on a healthy one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.training import TRAINING_RULES, diagnose
from graddoctor.diagnose.training.activations import dead_relu, saturated_activation
from graddoctor.diagnose.training.gradients import (
    exploding_gradient,
    stalled_layers,
    vanishing_gradient,
)
from graddoctor.diagnose.training.loss import loss_plateau
from graddoctor.diagnose.training.nonfinite import non_finite
from graddoctor.errors import InputError
from graddoctor.report import Report

# ---------------------------------------------------------------- synthetic records


def _meta(n: int = 8, activation: str = "relu", acts: list[dict] | None = None) -> dict:
    layers = [{"name": f"l{i}", "type": "Linear", "kind": "linear", "depth": i + 1,
               "min_depth": i + 1, "activation": activation if i < n - 1 else None,
               "is_output": i == n - 1, "numel": 100, "trainable": True} for i in range(n)]
    return {"layers": layers, "activations": acts or [], "config": {}}


def _steps(meta: dict, n_steps: int = 10, orders_per_layer: float = 0.0, growth: float = 1.0,
           loss=lambda t: 2.3 / (1 + 0.05 * t), **extra) -> list[dict]:
    names = [ly["name"] for ly in meta["layers"]]
    out = []
    for t in range(1, n_steps + 1):
        g = {nm: 0.1 * growth ** (t - 1) * 10 ** (-orders_per_layer * (len(names) - 1 - i))
             for i, nm in enumerate(names)}
        s = {"type": "step", "step": t, "loss": loss(t), "skipped": False, "lr": 0.1,
             "grad_norm": g, "weight_norm": {nm: 1.0 for nm in names},
             "nonfinite": {nm: 0 for nm in names}}
        s.update({k: (v(t) if callable(v) else v) for k, v in extra.items()})
        out.append(s)
    return out


def _codes(meta, steps) -> set[str]:
    return {f.code for f in diagnose(meta, steps)}


def test_vanishing_triggers_on_decay_and_reports_orders():
    meta = _meta(10)
    f = vanishing_gradient(meta, _steps(meta, orders_per_layer=0.5))
    assert len(f) == 1 and f[0].code == "vanishing-gradient" and f[0].severity == "error"
    ev = f[0].evidence
    # 10 layers, sides = 3 layers each: centres (layers 1 and 8) 7 layers apart
    assert ev["drop_orders"] == pytest.approx(3.5) and ev["orders_per_layer"] == pytest.approx(0.5)
    assert ev["rule_of_thumb_orders"] == [3, 4] and f[0].step == 1
    assert f[0].layers == ["l0", "l1", "l2"] and f[0].reference


def test_vanishing_persists_across_steps_that_record_too_few_layers():
    # two optimizers (a GAN): the critic's steps record its 10 layers, the generator's, between
    # them, only its own 2 (the others None); three critic rows in a row were never seen
    meta = _meta(12)
    steps = _steps(meta, n_steps=12, orders_per_layer=0.5)
    for i, s in enumerate(steps):
        s["grad_norm"] = {k: (v if (i % 2 == 0) == (k not in ("l10", "l11")) else None)
                          for k, v in s["grad_norm"].items()}
    (f,) = vanishing_gradient(meta, steps)
    assert f.severity == "error" and f.step == 1 and f.evidence["n_layers"] == 10


def test_vanishing_not_on_flat_profile_or_small_decay():
    meta = _meta(10)
    assert vanishing_gradient(meta, _steps(meta, orders_per_layer=0.0)) == []
    assert vanishing_gradient(meta, _steps(meta, orders_per_layer=0.2)) == []  # 1.2 orders


def test_vanishing_not_on_a_head_above_a_flat_body_but_on_a_dead_body():
    # a classifier head 2.5 orders above a flat encoder (a healthy BERT under the HF Trainer):
    # the head's scale, not decay with depth
    meta = _meta(10)
    steps = _steps(meta)
    for s in steps:
        s["grad_norm"] = {nm: (0.3 if nm in ("l8", "l9") else 1e-3 * (1.3 if i % 2 else 1.0))
                          for i, nm in enumerate(s["grad_norm"])}
    assert vanishing_gradient(meta, steps) == []
    for s in steps:  # the same step with a body that gets no gradient at all: a dead path
        s["grad_norm"] = {nm: (0.3 if nm in ("l8", "l9") else 0.0) for nm in s["grad_norm"]}
    assert [f.code for f in vanishing_gradient(meta, steps)] == ["vanishing-gradient"]
    for s in steps:  # and a body that decays itself: vanishing
        s["grad_norm"] = {nm: 0.3 * 10 ** (-0.4 * (9 - i)) for i, nm in enumerate(s["grad_norm"])}
    assert [f.code for f in vanishing_gradient(meta, steps)] == ["vanishing-gradient"]


def test_vanishing_ignores_frozen_layers_and_transient_steps():
    meta = _meta(10)
    steps = _steps(meta)
    for s in steps:  # input side frozen: no gradient at all, not a small one
        for nm in ("l0", "l1", "l2", "l3"):
            s["grad_norm"][nm] = None
    assert vanishing_gradient(meta, steps) == []
    steps = _steps(meta, orders_per_layer=0.6)
    for s in steps[1::2]:  # the pattern never holds PERSIST steps in a row
        s["grad_norm"] = {nm: 0.1 for nm in s["grad_norm"]}
    assert vanishing_gradient(meta, steps) == []
    meta["layers"][0]["trainable"] = False
    assert vanishing_gradient(meta, _steps(meta, orders_per_layer=0.0)) == []


def test_vanishing_needs_enough_layers():
    meta = _meta(3)  # with 3 layers the raw input scale of layer 1 would decide
    assert vanishing_gradient(meta, _steps(meta, orders_per_layer=2.0)) == []


def test_vanishing_remedies_follow_the_evidence():
    sig = _meta(10, activation="sigmoid")
    assert vanishing_gradient(sig, _steps(sig, orders_per_layer=0.5))[0].remedies[:3] == [
        "relu", "batchnorm", "residual"]
    relu = _meta(10, activation="relu")
    assert vanishing_gradient(relu, _steps(relu, orders_per_layer=0.5))[0].remedies[:2] == [
        "residual", "he-init"]
    # a model with norm layers already is not told to add BatchNorm
    normed = _meta(10, activation="sigmoid")
    normed["layers"].append({"name": "bn", "type": "BatchNorm1d", "kind": "norm", "trainable": True})
    assert "batchnorm" not in vanishing_gradient(normed, _steps(normed, orders_per_layer=0.5))[0].remedies


def test_exploding_over_steps_and_across_layers():
    meta = _meta(6)
    rising = lambda t: 2.3 * 1.5 ** t  # noqa: E731
    f = exploding_gradient(meta, _steps(meta, n_steps=6, growth=10.0, loss=rising))
    assert [x.code for x in f] == ["exploding-gradient"] and f[0].step == 3  # 2 orders by step 3
    assert f[0].remedies[:2] == ["clip-norm", "lower-lr"] and f[0].evidence["growth_orders"] >= 2
    # norms growing while the loss falls: a model leaving its plateau, not a blow-up
    assert exploding_gradient(meta, _steps(meta, n_steps=6, growth=10.0)) == []
    f = exploding_gradient(meta, _steps(meta, orders_per_layer=-0.6))
    assert f and f[0].evidence["drop_orders"] < -2
    assert exploding_gradient(meta, _steps(meta, growth=1.3)) == []  # 1 order in 10 steps


def test_exploding_when_the_norm_overflows():
    meta = _meta(4)
    steps = _steps(meta, n_steps=3)
    steps[0]["grad_norm"]["l1"] = float("inf")  # values finite (count 0), their norm beyond float32
    f = exploding_gradient(meta, steps)
    assert f and f[0].step == 1 and f[0].layers == ["l1"]


def test_exploding_ignores_amp_skipped_steps():
    meta = _meta(6)
    steps = _steps(meta, n_steps=8)
    for s in steps[3:5]:  # GradScaler overflow: huge/inf norms on skipped steps
        s["skipped"] = True
        s["grad_norm"] = {nm: float("inf") for nm in s["grad_norm"]}
        s["nonfinite"] = {nm: 5 for nm in s["nonfinite"]}
        s["loss"] = float("inf")
    assert _codes(meta, steps) == set()


def test_exploding_when_a_huge_step_precedes_nan():
    meta = _meta(6)
    steps = _steps(meta, n_steps=4)
    steps[0]["update_ratio"] = {nm: 50.0 for nm in steps[0]["grad_norm"]}
    steps[1]["loss"] = float("nan")
    steps[1]["nonfinite"] = {nm: 3 for nm in steps[1]["nonfinite"]}
    assert {"exploding-gradient", "non-finite"} <= _codes(meta, steps)
    steps[0]["update_ratio"] = {nm: 1e-3 for nm in steps[0]["grad_norm"]}  # NaN out of nowhere
    assert _codes(meta, steps) == {"non-finite"}


def test_non_finite_first_step_and_layers():
    meta = _meta(4)
    steps = _steps(meta, n_steps=5)
    steps[2]["nonfinite"]["l2"] = 7
    f = non_finite(meta, steps)
    assert f[0].step == 3 and f[0].layers == ["l2"] and f[0].evidence["nonfinite_values"] == 7
    assert non_finite(meta, _steps(meta)) == []


def test_non_finite_loss_on_one_skipped_batch_is_a_warning_not_an_error():
    # the user's loop skipped a batch with a NaN input but passed its loss to w.step: the
    # gradients stayed finite and the run went on (autofix must not roll the weights back)
    meta = _meta(4)
    steps = _steps(meta, n_steps=30)
    steps[10]["loss"] = float("nan")
    f = non_finite(meta, steps)
    assert [(x.severity, x.step) for x in f] == [("warning", 11)] and "bad batch" in f[0].message
    assert f[0].remedies == []  # a data problem: a lower rate or clipping would not prevent it
    steps[20]["loss"] = float("inf")  # twice: an error
    assert non_finite(meta, steps)[0].severity == "error"


def test_a_loss_non_finite_on_every_step_with_finite_gradients_is_not_the_trained_loss():
    # w.step was given another tensor than the one backward() ran on: the weights never saw a NaN
    # (it read as a blow-up: autofix rolled back and lowered the rate twice)
    meta = _meta(4)
    steps = _steps(meta, n_steps=30)
    for s in steps:
        s["loss"] = float("nan")
    f = non_finite(meta, steps)
    assert [(x.severity, x.remedies) for x in f] == [("warning", [])] and "backward()" in f[0].message
    steps[5]["nonfinite"]["l1"] = 3  # a gradient non-finite too: a real blow-up
    assert non_finite(meta, steps)[0].severity == "error"
    assert non_finite(meta, steps[:3])[0].severity == "error"  # too few steps to tell
    steps[20]["loss"] = 1.0
    steps[-1]["loss"] = float("nan")  # the run ends non-finite: an error
    assert non_finite(meta, steps)[0].severity == "error"
    steps[-1]["loss"] = 1.0
    steps[10]["nonfinite"]["l1"] = 2  # the NaN reached the gradients: an error
    assert non_finite(meta, steps)[0].severity == "error"


def test_non_finite_long_run_of_skipped_steps():
    meta = _meta(4)
    steps = _steps(meta, n_steps=40, skipped=lambda t: t > 5)
    f = non_finite(meta, steps)
    assert f and f[0].evidence["consecutive_skipped_steps"] == 35
    assert non_finite(meta, _steps(meta, n_steps=40, skipped=lambda t: t < 10)) == []


def _acts(**site) -> list[dict]:
    base = {"name": "a1", "kind": "relu", "family": "relu", "owner": "", "functional": False,
            "is_output": False}
    return [{**base, **site}]


def _act_steps(meta, key, value, **kw):
    return _steps(meta, n_steps=41, act=lambda t: {"a1": {key: value, "zero_frac": 0.5, **kw}}
                  if t % 20 == 1 else None)


def test_dead_relu_threshold_and_natural_zeros():
    meta = _meta(4, acts=_acts())
    f = dead_relu(meta, _act_steps(meta, "dead_frac", 0.8))
    assert f and f[0].layers == ["a1"] and f[0].remedies[:3] == ["leaky-relu", "he-init", "lower-lr"]
    # a healthy ReLU layer: half its outputs are zero, few units silent over the window
    assert dead_relu(meta, _act_steps(meta, "dead_frac", 0.1)) == []


def test_dead_relu_exclusions():
    out = _meta(4, acts=_acts(is_output=True))
    assert dead_relu(out, _act_steps(out, "dead_frac", 1.0)) == []
    leaky = _meta(4, acts=_acts(kind="leaky_relu"))  # passes gradient when negative: cannot die
    assert dead_relu(leaky, _act_steps(leaky, "dead_frac", 1.0)) == []


def test_saturated_activation_and_exclusions():
    tanh = _meta(4, acts=_acts(kind="tanh", family="saturating"))
    f = saturated_activation(tanh, _act_steps(tanh, "sat_frac", 0.7))
    assert f and f[0].code == "saturated-activation"
    assert saturated_activation(tanh, _act_steps(tanh, "sat_frac", 0.05)) == []
    for site in ({"is_output": True}, {"gate": True}, {"owner": "lstm_cell", "functional": True}):
        meta = _meta(4, acts=_acts(kind="sigmoid", family="saturating", **site))
        assert saturated_activation(meta, _act_steps(meta, "sat_frac", 0.9)) == [], site


def test_stalled_layers_on_update_ratio_profile():
    meta = _meta(9)
    names = [ly["name"] for ly in meta["layers"]]
    ur = {nm: 10 ** (-3 - 0.6 * (8 - i)) for i, nm in enumerate(names)}
    steps = _steps(meta, n_steps=21, update_ratio=lambda t: ur if t % 10 == 1 else None)
    f = stalled_layers(meta, steps)
    assert f and f[0].evidence["drop_orders"] >= 2 and f[0].layers[0] == "l0"
    flat = _steps(meta, n_steps=21, update_ratio=lambda t: {nm: 1e-3 for nm in names})
    assert stalled_layers(meta, flat) == []


def test_loss_plateau_flat_vs_learning_vs_warmup():
    meta = _meta(4)
    noise = [0.02 * math.sin(1.7 * t) for t in range(200)]
    flat = _steps(meta, n_steps=80, loss=lambda t: 2.3 + noise[t])
    f = loss_plateau(meta, flat)
    assert f and f[0].step <= 50 and f[0].evidence["level_over_start"] == pytest.approx(1, abs=0.02)
    assert loss_plateau(meta, _steps(meta, n_steps=80, loss=lambda t: 2.3 * 0.99 ** t)) == []
    warm = _steps(meta, n_steps=80, loss=lambda t: 2.3 + noise[t], lr=lambda t: 1e-3 * t)
    assert loss_plateau(meta, warm) == []


def test_diagnose_validates_input_and_runs_the_registry():
    with pytest.raises(InputError, match="records"):
        diagnose([], [])
    with pytest.raises(InputError, match="unknown training rule"):
        diagnose({}, [], rules=["nope"])
    assert set(TRAINING_RULES) == {"vanishing-gradient", "exploding-gradient", "non-finite",
                                   "dead-relu", "saturated-activation", "stalled-layers",
                                   "loss-plateau", "batchnorm-eval-mode", "clip-too-tight",
                                   "post-ln-no-warmup", "no-gradient", "poor-init", "softmax-before-loss"}
    assert diagnose({"layers": []}, []) == []


def test_diagnose_ignores_debris_after_the_first_nan():
    meta = _meta(10)
    steps = _steps(meta, n_steps=10)
    for s in steps[4:]:  # after the NaN the records are garbage: no vanishing from them
        s["loss"] = float("nan")
        s["grad_norm"] = {nm: 1e-20 if i < 5 else 1.0 for i, nm in enumerate(s["grad_norm"])}
    assert _codes(meta, steps) == {"non-finite"}


def test_diagnose_ignores_the_wreck_after_a_blowup():
    meta = _meta(10)
    steps = _steps(meta, n_steps=12, growth=1.0, loss=lambda t: 2.3 if t < 4 else 1e6)
    for s in steps[3:]:  # blown up at step 4 (x1e3, loss up), then a wrecked, vanishing profile
        s["grad_norm"] = {nm: 1e2 * 10 ** (-0.8 * (9 - i)) for i, nm in enumerate(s["grad_norm"])}
    codes = _codes(meta, steps)
    assert "exploding-gradient" in codes and "vanishing-gradient" not in codes
    f = exploding_gradient(meta, steps)[0]
    assert f.step == 4 and f.evidence["growth_orders"] >= 2


# ---------------------------------------------------------------- real runs under watch


def _train(model, x, y, opt, steps, loss_fn=nn.functional.cross_entropy):
    with gd.watch(model, optimizer=opt, example_inputs=x[:8]) as w:
        for t in range(steps):
            i = torch.arange(t * 32, t * 32 + 32) % len(x)
            loss = loss_fn(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
            if not torch.isfinite(loss):
                break
    return w.records()


@pytest.fixture(scope="module")
def digits():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on shared cores: oversubscribing threads is ~10x slower
    torch.manual_seed(0)
    from graddoctor import data

    b = data.load("digits", seed=0)
    yield b.x_train[:640].float(), b.y_train[:640]
    torch.set_num_threads(n)


def test_real_sigmoid20_vanishing_evidence(digits):
    x, y = digits
    net = zoo.mlp(depth=20, width=32, in_features=64, activation="sigmoid")
    meta, steps = _train(net, x, y, torch.optim.SGD(net.parameters(), lr=0.1), 12)
    assert "stalled-layers" in _codes(meta, steps)  # SGD: update = lr * gradient
    f = [f for f in diagnose(meta, steps) if f.code == "vanishing-gradient"]
    assert f and f[0].severity == "error"
    ev = f[0].evidence
    assert ev["drop_orders"] > 4 and ev["exceeds_rule_of_thumb"] and ev["rule_of_thumb_orders"] == [3, 4]
    assert ev["orders_per_layer"] > 0.3 and len(ev["profile_log10"]) == 20
    assert f[0].remedies[:3] == ["relu", "batchnorm", "residual"]
    assert "orders of magnitude" in f[0].message and "3-4" in f[0].message


def test_real_healthy_relu_he_is_quiet(digits):
    x, y = digits
    net = zoo.mlp(depth=8, width=32, in_features=64, init="he")
    meta, steps = _train(net, x, y, torch.optim.Adam(net.parameters(), lr=1e-3), 60)
    assert diagnose(meta, steps) == []


def test_real_dead_relu_and_no_false_dead_on_he(digits):
    x, y = digits
    dead = zoo.mlp(depth=4, width=32, in_features=64, init="he", bias=-3.0)
    meta, steps = _train(dead, x, y, torch.optim.SGD(dead.parameters(), lr=0.05), 25)
    assert "dead-relu" in _codes(meta, steps)


def test_real_saturation_and_sigmoid_output_excepted(digits):
    x, y = digits
    sat = zoo.mlp(depth=4, width=32, in_features=64, activation="tanh", init=0.9)
    meta, steps = _train(sat, x, y, torch.optim.Adam(sat.parameters(), lr=1e-3), 25)
    assert "saturated-activation" in _codes(meta, steps)
    out = nn.Sequential(zoo.mlp(depth=3, width=32, in_features=64, out_features=1, init="he"),
                        nn.Sigmoid())
    yb = (y >= 5).float()
    meta, steps = _train(out, x, yb, torch.optim.Adam(out.parameters(), lr=3e-3), 45,
                         lambda o, t: nn.functional.binary_cross_entropy(o.squeeze(-1), t))
    assert meta["activations"][-1]["is_output"] and "saturated-activation" not in _codes(meta, steps)


def test_real_divergence_is_exploding_then_non_finite(digits):
    x, y = digits
    net = zoo.mlp(depth=4, width=32, in_features=64, activation="leaky_relu", init="he")
    meta, steps = _train(net, x, y, torch.optim.SGD(net.parameters(), lr=30.0), 20)
    f = {f.code: f for f in diagnose(meta, steps)}
    assert {"exploding-gradient", "non-finite"} <= set(f)
    assert f["exploding-gradient"].step <= f["non-finite"].step


def test_real_frozen_layers_are_not_vanishing(digits):
    x, y = digits
    net = zoo.mlp(depth=6, width=32, in_features=64, init="he")
    for m in list(net.modules())[1:6]:
        m.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    meta, steps = _train(net, x, y, opt, 10)
    assert not {"vanishing-gradient", "stalled-layers"} & _codes(meta, steps)


def test_real_tiny_lr_plateaus(digits):
    x, y = digits
    net = zoo.mlp(depth=4, width=32, in_features=64, init="he")
    meta, steps = _train(net, x, y, torch.optim.SGD(net.parameters(), lr=1e-5), 60)
    assert _codes(meta, steps) == {"loss-plateau"}


def test_report_renders_findings(digits):
    x, y = digits
    net = zoo.mlp(depth=20, width=32, in_features=64, activation="sigmoid")
    meta, steps = _train(net, x, y, torch.optim.SGD(net.parameters(), lr=0.1), 4)
    rep = Report(diagnose(meta, steps), source="watch")
    text = str(rep)
    assert "vanishing-gradient" in text and "what to do: relu" in text and not rep.ok
    assert rep.summary().startswith("graddoctor watch: PROBLEMS")
    assert Report.from_dict(rep.to_dict()).codes == rep.codes
