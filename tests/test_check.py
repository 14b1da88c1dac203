"""gd.check on the acceptance models: each finding on a model that must trigger it, and clean controls."""

from __future__ import annotations

import importlib
import json

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.errors import InputError

LOUD = ("error", "warning")


def loud(report: gd.Report) -> set[str]:
    """Codes of error/warning findings."""
    return {f.code for f in report.findings if f.severity in LOUD}


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(16, 64, generator=torch.Generator().manual_seed(0))


def test_sigmoid_mlp_20_vanishing_and_saturating(x64):
    r = gd.check(zoo.mlp(depth=20, activation="sigmoid"), x64)
    assert r.source == "check" and not r.ok
    van = r.by_code("vanishing-gradient")[0]
    assert van.severity == "error" and van.step == 0
    assert van.evidence["orders_over_depth"] > 10  # measured ~16 orders
    assert len(van.evidence["grad_log10"]) == 20
    assert van.remedies[0] == "relu"
    assert "0" in van.layers  # the input-side layer is among the starved ones
    sat = r.by_code("saturating-hidden-activation")[0]
    assert sat.severity == "warning" and len(sat.layers) == 19
    assert "exploding-gradient" not in r.codes and "signal-explosion" not in r.codes


def test_relu_he_mlp_20_is_clean(x64):
    r = gd.check(zoo.mlp(depth=20, activation="relu", init="he"), x64)
    assert loud(r) == set(), str(r)
    assert r.ok
    grad = r.data["probe"]["grad_rms"]
    assert max(grad) / min(grad) < 10  # the profile is flat: the clean verdict is measured


def test_relu_default_init_20_vanishes_and_is_poor_init(x64):
    r = gd.check(zoo.mlp(depth=20, activation="relu"), x64)  # PyTorch default: gain 1/sqrt(6) per layer
    assert {"vanishing-gradient", "poor-init"} <= loud(r)
    assert r.by_code("poor-init")[0].evidence["chain_orders"] < -2


def test_relu_normal01_mlp_50_explodes(x64):
    r = gd.check(zoo.mlp(depth=50, activation="relu", init="normal", std=1.0), x64, jacobian_k=0)
    exp = r.by_code("exploding-gradient")[0]
    assert exp.severity == "error" and exp.evidence["orders_over_depth"] > 20
    assert r.by_code("signal-explosion")[0].severity == "error"
    assert {"poor-init", "deep-without-skip"} <= r.codes
    assert "vanishing-gradient" not in r.codes and "signal-collapse" not in r.codes


def test_resnet56_clean_with_shortcuts_deep_without_skip_without():
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    res = gd.check(zoo.cnn(56), x, jacobian_k=0)
    assert loud(res) == set(), str(res)
    assert res.data["map"]["shortest_weight_path"] < 10
    plain = gd.check(zoo.cnn(56, shortcut=False), x, jacobian_k=0)
    deep = plain.by_code("deep-without-skip")[0]
    assert deep.evidence["shortest_weight_path"] == 56  # 55 convs + the head
    assert "vanishing-gradient" not in plain.codes


def test_batchnorm_cnn_batch_2():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    net = zoo.cnn(8, kind="plain")
    r = gd.check(net, x, probe=False)
    f = r.by_code("small-batch-batchnorm")[0]
    assert f.evidence["batch"] == 2 and f.remedies[0] == "groupnorm"
    assert len(f.layers) == sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    x16 = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert "small-batch-batchnorm" not in gd.check(net, x16, probe=False).codes
    assert "small-batch-batchnorm" not in gd.check(net.eval(), x, probe=False).codes
    assert not net.training  # check kept the mode it was given


def test_lstm_vs_vanilla_rnn_on_300_steps():
    x = torch.randn(4, 300, 2, generator=torch.Generator().manual_seed(0))
    rnn = gd.check(zoo.rnn("rnn"), x, jacobian_k=0)
    assert "long-sequence-rnn" in rnn.codes
    van = rnn.by_code("vanishing-gradient")[0]
    assert van.severity == "error" and van.evidence["steps"] == 300
    assert van.evidence["orders_over_time"] > 4 and van.remedies[0] == "lstm"
    lstm = gd.check(zoo.rnn("lstm"), x, jacobian_k=0)
    assert loud(lstm) == set(), str(lstm)
    assert len(lstm.data["probe"]["time_grad"]) == 300  # measured, kept as data


def test_check_leaves_no_trace(x64):
    net = zoo.mlp(depth=6, activation="tanh", norm="batch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    gd.check(net, x64)
    assert torch.equal(torch.rand(2), expected)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_report_round_trips_to_json(x64):
    r = gd.check(zoo.mlp(depth=20, activation="sigmoid"), x64)
    back = gd.Report.from_dict(json.loads(r.to_json()))
    assert back.codes == r.codes and back.data["probe"]["layers"] == r.data["probe"]["layers"]


def test_overflow_is_reported_not_crashed(x64):
    r = gd.check(zoo.mlp(depth=100, activation="relu", init="normal", std=1.0), x64[:4], jacobian_k=0)
    boom = r.by_code("signal-explosion")[0]
    assert boom.severity == "error" and boom.evidence["non_finite_layers"] > 0
    assert r.by_code("exploding-gradient")[0].severity == "error"
    json.loads(r.to_json())  # non-finite numbers are JSON-safe


def test_gd_check_is_the_function_whichever_import_came_first():
    from graddoctor.diagnose.checkup import check

    importlib.import_module("graddoctor.diagnose.checkup")
    assert gd.check is check
    assert gd.check(nn.Linear(3, 2), torch.randn(4, 3)).source == "check"


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(gd.GraddoctorError, match="nn.Module"):
        gd.check("not a model", torch.randn(2, 2))
    with pytest.raises(gd.GraddoctorError, match="example inputs"):
        gd.check(nn.Linear(2, 2), [1, 2])
    with pytest.raises(gd.GraddoctorError, match="forward failed"):
        gd.check(nn.Linear(2, 2), torch.randn(3, 5))


def test_a_model_without_parameters_is_nothing_to_check():
    with pytest.raises(InputError) as err:  # not "no findings": there is no gradient to check
        gd.check(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(4, 3))
    msg = str(err.value)
    assert "\n" not in msg and "has no parameters" in msg and "nothing to check" in msg
