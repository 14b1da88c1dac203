"""repair() and the planner: coherent plans, no mutation, check is clean after repair."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.errors import InputError
from graddoctor.fix.planner import plan
from graddoctor.fix.remedies.residual import Residual
from graddoctor.fix.repairing import RepairResult, repair
from graddoctor.report import Finding, Report
from graddoctor.zoo.cnn import ConvNet


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def report(*codes: str, remedies: dict[str, list[str]] | None = None) -> Report:
    remedies = remedies or {}
    return Report([Finding(c, "error", c, remedies=remedies.get(c, [])) for c in codes])


def remedy_ids(result_or_plan) -> list[str]:
    steps = result_or_plan.plan if isinstance(result_or_plan, RepairResult) else result_or_plan
    return [s.remedy for s in steps]


def snapshot(model: nn.Module):
    return repr(model), {k: v.clone() for k, v in model.state_dict().items()}


def same(model: nn.Module, snap) -> bool:
    text, state = snap
    now = model.state_dict()
    return repr(model) == text and all(torch.equal(now[k], v) for k, v in state.items())


# ---------------------------------------------------------------- the planner table


X64 = torch.randn(16, 64, generator=gen())
IMG = torch.randn(16, 1, 8, 8, generator=gen())


@pytest.mark.parametrize("model,codes,expected", [
    (lambda: zoo.mlp(depth=20, activation="sigmoid"), ["vanishing-gradient"], ["relu", "he-init", "rezero"]),
    (lambda: zoo.mlp(depth=12, activation="sigmoid"), ["stalled-layers"], ["relu", "he-init", "rezero"]),
    (lambda: zoo.mlp(depth=11, activation="sigmoid"), ["vanishing-gradient"], ["relu", "he-init"]),
    (lambda: zoo.mlp(depth=20, activation="sigmoid"), ["saturating-hidden-activation"], ["relu", "he-init"]),
    (lambda: zoo.mlp(depth=60, activation="sigmoid"), ["vanishing-gradient"], ["relu", "he-init", "rezero"]),
    (lambda: zoo.mlp(depth=20, activation="relu"), ["dead-relu"], ["leaky-relu", "he-init"]),
    # a plain tanh MLP: orthogonal weights at the edge of chaos (a tanh CNN, or a skip planned: Xavier)
    (lambda: zoo.mlp(depth=20, activation="tanh"), ["poor-init"], ["edge-of-chaos-init"]),
    (lambda: zoo.cnn(in_channels=1, depth=6, kind="plain", batchnorm=False, activation="tanh"), ["poor-init"],
     ["xavier-init"]),
    (lambda: zoo.mlp(depth=20, activation="relu"), ["poor-init"], ["he-init"]),
    (lambda: zoo.mlp(depth=20, activation="relu"), ["exploding-gradient"], ["clip-norm"]),
    (lambda: zoo.mlp(depth=20, activation="relu"), ["exploding-gradient", "signal-explosion"],
     ["he-init", "clip-norm"]),
    (lambda: zoo.mlp(depth=40, activation="relu"), ["deep-without-skip"], ["rezero"]),
    (lambda: zoo.mlp(depth=40, activation="relu", norm="batch"), ["deep-without-skip"], ["residual"]),
    (lambda: zoo.mlp(depth=4), ["non-finite"], ["clip-norm", "lower-lr"]),
    (lambda: zoo.mlp(depth=4), ["loss-plateau"], ["lr-find"]),
    (lambda: zoo.mlp(depth=16, activation="tanh", init=0.03),
     ["saturating-hidden-activation", "poor-init", "vanishing-gradient"], ["xavier-init", "rezero"]),
    (lambda: zoo.mlp(depth=16, activation="sigmoid", init=0.03),
     ["saturating-hidden-activation", "poor-init", "vanishing-gradient"], ["relu", "he-init", "rezero"]),
    (lambda: zoo.cnn(20, kind="plain", batchnorm=False, in_channels=1, width=4),
     ["vanishing-gradient", "poor-init"], ["he-init", "rezero"]),
    (lambda: zoo.cnn(20, batchnorm=False, in_channels=1, width=4),  # has shortcuts: norms instead
     ["vanishing-gradient", "poor-init"], ["batchnorm", "he-init"]),
])
def test_planner_table(model, codes, expected):
    net = model()
    x = IMG if isinstance(net, ConvNet) else X64
    assert remedy_ids(plan(report(*codes), net, x)) == expected


def test_planner_follows_the_findings_ranking_where_coherent():
    net = zoo.mlp(depth=20, activation="sigmoid")
    r = report("saturating-hidden-activation", "poor-init",
               remedies={"saturating-hidden-activation": ["gelu", "relu"], "poor-init": ["lsuv-init"]})
    steps = plan(r, net, X64)
    assert remedy_ids(steps) == ["gelu", "lsuv-init"]
    assert all(s.reason for s in steps) and steps[0].codes == ["saturating-hidden-activation"]


def test_planner_small_batch_batchnorm_and_rnn():
    cnn, x2 = zoo.cnn(8, kind="plain"), torch.randn(2, 3, 8, 8, generator=gen())
    assert remedy_ids(plan(report("small-batch-batchnorm"), cnn, x2)) == ["groupnorm"]
    mlp_bn = zoo.mlp(depth=4, norm="batch")
    assert remedy_ids(plan(report("small-batch-batchnorm"), mlp_bn, X64[:2])) == ["layernorm"]
    rnn, seq = zoo.rnn("rnn"), torch.randn(2, 30, 2)
    assert remedy_ids(plan(report("long-sequence-rnn"), rnn, seq)) == [
        "orthogonal-init", "clip-norm", "lstm"]
    steps = plan(report("exploding-gradient", "non-finite"), rnn, seq)
    assert remedy_ids(steps) == ["orthogonal-init", "clip-norm", "lower-lr"]
    assert steps[0].options == {"layers": ["rnn"]}
    assert remedy_ids(plan(report("vanishing-gradient"), zoo.rnn("lstm"), seq)) == ["orthogonal-init"]


# ---------------------------------------------------------------- repair()


def test_repair_never_mutates_and_is_deterministic():
    net = zoo.mlp(depth=8, activation="sigmoid")
    snap = snapshot(net)
    rng = torch.get_rng_state()
    r = report("vanishing-gradient", "deep-without-skip")
    a, b = repair(net, r, example_inputs=X64), repair(net, r, example_inputs=X64)
    assert same(net, snap) and torch.equal(torch.get_rng_state(), rng)
    assert a.model is not net
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    inplace = repair(net, r, example_inputs=X64, inplace=True)
    assert inplace.model is net and not same(net, snap)


def test_repair_traces_the_model_once_and_matches_remedies_applied_one_by_one(monkeypatch):
    """One ModelMap along the plan (planner -> swap -> re-init -> skips): a single trace, and
    the repaired model equal to the remedies applied one after another, each tracing on its own."""
    from graddoctor.fix import remedies as registry
    from graddoctor.modelmap import ModelMap

    net = zoo.mlp(depth=60, activation="sigmoid")
    r = report("vanishing-gradient", "saturating-hidden-activation", "poor-init")
    traces = []
    original = ModelMap._trace
    monkeypatch.setattr(ModelMap, "_trace", lambda self, *a: traces.append(1) or original(self, *a))
    res = repair(net, r, example_inputs=X64, seed=3)
    assert len(traces) == 1, f"{len(traces)} traces"
    monkeypatch.setattr(ModelMap, "_trace", original)
    assert remedy_ids(res) == ["relu", "he-init", "rezero"]
    with torch.random.fork_rng():
        torch.manual_seed(3)
        ref = net
        for rid in remedy_ids(res):
            ref, _ = registry.apply(rid, ref, X64)
    assert repr(ref) == repr(res.model)
    sa, sb = ref.state_dict(), res.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(c.mmap is None for c in res.changes)  # the map is not kept in the result


def test_repair_explains_itself_with_manual_code_changes():
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(8, 8) for _ in range(4))
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            for layer in self.layers:
                x = torch.sigmoid(layer(x))
            return self.head(x)

    net = Functional()
    res = repair(net, report("saturating-hidden-activation"), example_inputs=torch.randn(4, 8))
    text = str(res)
    assert "code change needed" in text and "F.relu(x)" in text and "model/sigmoid#0" in text
    assert "in Functional.forward: replace the sigmoid call" in text
    assert res.manual and res.changes[0].kind == "manual"
    assert isinstance(res.to_dict()["changes"], list)


def test_explicit_remedies_and_missing_inputs():
    net = zoo.mlp(depth=6, activation="tanh")
    res = repair(net, Report(), example_inputs=X64, remedies=["elu", "lsuv-init"])
    assert remedy_ids(res) == ["elu", "lsuv-init"] and isinstance(res.model[1], nn.ELU)
    res = repair(net, Report(), remedies=["rezero"])  # no inputs: reported, not crashed
    assert res.changes[0].kind == "advice" and "example_inputs" in res.changes[0].why
    with pytest.raises(InputError, match="unknown remedy"):
        repair(net, Report(), remedies=["magic"])


@pytest.mark.parametrize("bad,needle", [
    ("vanishing-gradient", "got str 'vanishing-gradient'"),
    (["vanishing-gradient"], "got a list holding str"),
    ("he-init", "pass remedies=[...]"),
    (3, "got int"),
])
def test_report_that_is_not_findings_is_a_one_line_input_error(bad, needle):
    with pytest.raises(InputError) as err:
        repair(zoo.mlp(depth=4), bad, example_inputs=X64)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("gd.repair: report must be the Report of gd.check")
    assert needle in msg


def test_clipping_attaches_to_the_optimizer_of_the_repaired_model():
    net = zoo.mlp(depth=4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    res = repair(net, report("exploding-gradient"), example_inputs=X64, optimizer=opt)
    clip = [c for c in res.changes if c.remedy == "clip-norm"][0]
    assert clip.kind == "advice"  # the copy's params are not the optimizer's
    assert any(c.remedy == "optimizer" and c.kind == "manual" for c in res.changes)
    res = repair(net, report("exploding-gradient"), example_inputs=X64, optimizer=opt, inplace=True)
    clip = [c for c in res.changes if c.remedy == "clip-norm"][0]
    assert clip.kind == "applied" and len(opt._optimizer_step_pre_hooks) == 1
    # a second in-place repair (or a later watch session) replaces the clip instead of stacking one
    repair(net, report("exploding-gradient"), example_inputs=X64, optimizer=opt, inplace=True)
    assert len(opt._optimizer_step_pre_hooks) == 1
    net(X64).pow(2).sum().mul(1e6).backward()
    before = [p.detach().clone() for p in net.parameters()]
    opt.step()
    step = torch.sqrt(sum(((a - p.detach()) ** 2).sum() for a, p in zip(before, net.parameters())))
    assert step.item() == pytest.approx(0.1, rel=1e-4)  # lr * clipped norm 1.0
    clip.handles[0].remove()


# ---------------------------------------------------------------- check is clean after repair


FAULTY = {
    "sigmoid-mlp-20": (lambda: zoo.mlp(depth=20, activation="sigmoid"), lambda: torch.randn(16, 64, generator=gen())),
    "relu-normal01-mlp-50": (lambda: zoo.mlp(depth=50, activation="relu", init="normal", std=1.0),
                             lambda: torch.randn(16, 64, generator=gen())),
    "resnet56-no-shortcut": (lambda: zoo.cnn(56, shortcut=False), lambda: torch.randn(8, 3, 8, 8, generator=gen())),
    "batchnorm-cnn-batch-2": (lambda: zoo.cnn(8, kind="plain"), lambda: torch.randn(2, 3, 8, 8, generator=gen())),
}


@pytest.mark.parametrize("name", FAULTY)
def test_check_has_no_errors_after_repair(name):
    model, inputs = FAULTY[name]
    net, x = model(), inputs()
    before = gd.check(net, x, jacobian_k=0)
    assert before.findings, f"{name}: check found nothing to repair"
    res = repair(net, before, example_inputs=x)
    after = gd.check(res.model, x, jacobian_k=0)
    assert after.ok, f"{name}:\n{res}\n{after}"
    assert not after.codes & before.codes, f"{name}: still {after.codes & before.codes}\n{res}"
    assert res.model(x).shape == net(x).shape


def test_vanilla_rnn_300_steps_gets_the_lstm_code_change():
    net, x = zoo.rnn("rnn"), torch.randn(4, 300, 2, generator=gen())
    before = gd.check(net, x, jacobian_k=0)
    res = repair(net, before, example_inputs=x)
    lstm = [c for c in res.changes if c.remedy == "lstm"][0]
    assert lstm.kind == "manual" and lstm.modules == ["rnn"] and "nn.LSTM(2, 64" in str(res)
    # the code change it asks for is what check calls healthy
    assert gd.check(zoo.rnn("lstm"), x, jacobian_k=0).ok


# ---------------------------------------------------------------- depth stress (trains)


def _train(model: nn.Module, bundle, steps: int, lr: float = 3e-3, seed: int = 0) -> float:
    g = gen(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(bundle.x_train), (64,), generator=g)
        loss = F.cross_entropy(model(bundle.x_train[idx]), bundle.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return (model(bundle.x_test).argmax(1) == bundle.y_test).float().mean().item()


@pytest.mark.slow
def test_deep_sigmoid_mlp_learns_after_repair():
    """200-layer sigmoid MLP on digits: ~10% as built, >= 90% after repair, same step budget.

    (benchmarks/depth_stress.py runs the 2-minute wall-clock version.)
    """
    b = data.load("digits", seed=0)
    net = zoo.mlp(depth=200, width=32, activation="sigmoid")
    x = b.x_train[:64]
    t0 = time.perf_counter()
    res = repair(net, gd.check(net, x, jacobian_k=0), example_inputs=x)
    repair_s = time.perf_counter() - t0
    assert any(isinstance(m, Residual) for m in res.model.modules())
    broken = _train(net, b, 120)
    fixed = _train(res.model, b, 120)  # measured 0.95 (broken 0.10)
    assert broken < 0.2 and fixed >= 0.9, (broken, fixed, str(res))
    assert repair_s < 10


def test_after_a_swap_poor_inits_ranking_for_the_old_activation_is_not_followed():
    # poor-init ranks for the activation it saw (a sigmoid chain: xavier, then orthogonal); after
    # the swap to ReLU neither fits (orthogonal at gain 1 halves a ReLU layer's variance): He
    net = zoo.mlp(depth=20, activation="sigmoid")
    r = report("saturating-hidden-activation", "poor-init",
               remedies={"poor-init": ["xavier-init", "orthogonal-init", "lsuv-init", "he-init"]})
    assert remedy_ids(plan(r, net, X64))[:2] == ["relu", "he-init"]
