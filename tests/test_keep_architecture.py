"""repair(..., keep_architecture=True): init-only remedies from mean-field theory, then the LR
range test; same module types and count afterwards (issue 20)."""

from __future__ import annotations

from itertools import islice

import torch
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.fix.keep_architecture import keep_architecture_plan
from graddoctor.fix.planner import PlanStep
from graddoctor.report import Finding, Report
from graddoctor.train import accuracy, fit, sampled_batches

DIGITS = data.load("digits", seed=0)
X = DIGITS.x_train[:64]


def _types(model: nn.Module) -> list[str]:
    return [type(m).__name__ for m in model.modules()]


def _codes(model: nn.Module) -> set[str]:
    return {f.code for f in gd.check(model, X, jacobian_k=0).findings}


def test_a_deep_tanh_mlp_keeps_its_modules_and_its_gradient_stops_vanishing() -> None:
    net = zoo.mlp(depth=120, width=32, activation="tanh", seed=0)
    before = [p.clone() for p in net.parameters()]
    report = gd.check(net, X, jacobian_k=0)
    assert "vanishing-gradient" in {f.code for f in report.findings}  # the control: it must trigger
    res = gd.repair(net, report, example_inputs=X, keep_architecture=True)
    assert _types(res.model) == _types(net)  # same module types, same count, same order
    assert [c.remedy for c in res.applied] == ["edge-of-chaos-init"]
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters()))  # input untouched
    assert "vanishing-gradient" not in _codes(res.model)
    t = res.theory
    assert t["kind"] == "tanh" and t["xi_c"] == float("inf") and 1.0 < t["sigma_w"] < 1.1
    assert "edge of chaos" in str(res) and "depth scale" in str(res)


def test_a_deep_sigmoid_mlp_is_centred_at_the_edge_of_chaos() -> None:
    net = zoo.mlp(depth=100, width=32, activation="sigmoid", seed=0)
    report = gd.check(net, X, jacobian_k=0)
    assert "vanishing-gradient" in {f.code for f in report.findings}
    res = gd.repair(net, report, example_inputs=X, keep_architecture=True)
    assert _types(res.model) == _types(net) and res.theory["kind"] == "sigmoid"
    assert 3.9 < res.theory["sigma_w"] < 4.3  # sigmoid(x) - 1/2 = tanh(x/2)/2: slope 1/4 at 0
    assert "vanishing-gradient" not in _codes(res.model)
    # centred: hidden pre-activations have mean ~0 although sigmoid outputs have mean 1/2
    seen = []
    res.model[-3].register_forward_hook(lambda m, a, out: seen.append(out))
    res.model(X)
    assert abs(float(seen[0].detach().mean())) < 0.1


def test_a_deep_relu_mlp_gets_looks_linear_weights_and_computes_a_linear_map() -> None:
    net = zoo.mlp(depth=60, width=32, activation="relu", init=0.02, seed=0)
    report = gd.check(net, X, jacobian_k=0)
    assert "vanishing-gradient" in {f.code for f in report.findings} or "signal-collapse" in {
        f.code for f in report.findings}
    res = gd.repair(net, report, example_inputs=X, keep_architecture=True)
    assert _types(res.model) == _types(net)
    assert [c.remedy for c in res.applied] == ["looks-linear-init"]
    new = res.model
    with torch.no_grad():
        assert torch.allclose(new(-X), -new(X), atol=1e-4)  # odd: linear at init
        # orthogonal blocks: the signal keeps its size through 60 layers
        assert 0.2 < float(new(X).norm() / X.norm()) < 5
    assert "vanishing-gradient" not in _codes(new)


def test_the_lr_range_test_sets_the_learning_rate_and_the_optimizer() -> None:
    net = zoo.mlp(depth=30, width=32, activation="tanh", seed=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    batches = list(islice(sampled_batches(DIGITS.x_train, DIGITS.y_train, 64, 1), 60))
    res = gd.repair(net, None, example_inputs=X, keep_architecture=True, optimizer=opt,
                    train_loader=batches, lr_find_options={"num_steps": 60, "start_lr": 1e-6})
    assert res.lr is not None and res.lr == res.lr_find.suggestion
    assert res.optimizer is not opt and isinstance(res.optimizer, torch.optim.Adam)
    assert {id(p) for g in res.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in res.model.parameters()}
    assert all(g["lr"] == res.lr for g in res.optimizer.param_groups)
    assert opt.param_groups[0]["lr"] == 1e-3


def test_without_batches_the_lr_is_advice_not_an_error() -> None:
    net = zoo.mlp(depth=30, width=32, activation="tanh", seed=0)
    res = gd.repair(net, None, example_inputs=X, keep_architecture=True)
    assert res.lr is None and res.optimizer is None
    assert [c.kind for c in res.changes if c.remedy == "lr-find"] == ["advice"]


def test_keep_architecture_trains_a_deep_plain_tanh_mlp_that_default_init_does_not() -> None:
    torch.manual_seed(0)
    accs = {}
    for name in ("default", "keep"):
        net = zoo.mlp(depth=80, width=32, activation="tanh", seed=0)
        if name == "keep":
            net = gd.repair(net, None, example_inputs=X, keep_architecture=True).model
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        fit(net, opt, sampled_batches(DIGITS.x_train, DIGITS.y_train, 64, 0), steps=150)
        accs[name] = accuracy(net, DIGITS.x_test, DIGITS.y_test)
    assert accs["keep"] > 0.8 and accs["default"] < 0.5, accs


def test_settings_that_keep_the_weights_survive_keep_architecture() -> None:
    # BatchNorm left in eval mode: the fix is train-mode; keep_architecture used to replace it by
    # a looks-linear re-draw (family "norm"), which left the BatchNorms in eval mode and threw the
    # weights away
    net = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 4)).eval()
    before = [p.clone() for p in net.parameters()]
    report = Report([Finding("batchnorm-eval-mode", "error", "BatchNorm in eval mode", ["1"])])
    res = gd.repair(net, report, example_inputs=torch.randn(32, 16), keep_architecture=True)
    assert [c.remedy for c in res.applied] == ["train-mode"]
    assert res.model[1].training
    assert all(torch.equal(p, q) for p, q in zip(before, res.model.parameters()))  # nothing re-drawn
    steps = [PlanStep("relu", "swap"), PlanStep("norm-gain", "gains at 0"), PlanStep("forget-bias", "closed gate"),
             PlanStep("he-init", "re-init")]
    plan = keep_architecture_plan(steps, net, torch.randn(32, 16))
    assert [s.remedy for s in plan] == ["looks-linear-init", "norm-gain", "forget-bias"]
