"""The diagnose layer's contracts: a broken rule is never "ok", one trace per ``check``,
rules never reach back into the verbs, shared thresholds and activation facts have one home.
"""

from __future__ import annotations

import ast
import importlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import kinds, zoo
from graddoctor.diagnose import thresholds, watching
from graddoctor.diagnose.checktime import static
from graddoctor.diagnose.checktime.recurrence import recurrence
from graddoctor.diagnose.training import TRAINING_RULES
from graddoctor.modelmap import ModelMap

DIAGNOSE = Path(gd.__file__).resolve().parent / "diagnose"
META = {"layers": [{"name": "0", "kind": "linear"}], "activations": []}
STEPS = [{"step": t, "loss": 1.0, "grad_norm": {"0": 0.1}, "weight_norm": {"0": 1.0}} for t in range(3)]


# ---------------------------------------------------------------- a broken rule raises


@pytest.mark.parametrize("error", [RuntimeError("rule bug"), ImportError("rule module gone")])
def test_a_training_rule_that_raises_is_not_reported_as_ok(monkeypatch, error):
    assert watching.build_report(META, STEPS).ok  # the control: these records are healthy

    def broken(meta, steps):
        raise error

    monkeypatch.setitem(TRAINING_RULES, "dead-relu", broken)
    with pytest.raises(type(error), match=str(error)):
        watching.build_report(META, STEPS)


def test_watcher_report_propagates_a_rule_error(monkeypatch):
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gd.watch(net, opt) as w:
        loss = net(torch.randn(4, 3)).sum()
        loss.backward()
        opt.step()
        w.step(loss)
    monkeypatch.setitem(TRAINING_RULES, "loss-plateau", lambda meta, steps: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        w.report()


def test_a_missing_rule_module_fails_the_import_of_build_report(monkeypatch):
    monkeypatch.setitem(sys.modules, "graddoctor.diagnose.training", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "graddoctor.diagnose.watching")
    with pytest.raises(ImportError):
        importlib.import_module("graddoctor.diagnose.watching")


def test_a_check_rule_that_raises_propagates(monkeypatch):
    def broken(m, model):
        raise RuntimeError("static rule bug")

    monkeypatch.setitem(static.STATIC_RULES, "poor-init", broken)
    with pytest.raises(RuntimeError, match="static rule bug"):
        gd.check(zoo.mlp(depth=3), torch.randn(8, 64))


# ---------------------------------------------------------------- one trace per check


def test_check_traces_the_model_once_and_hands_the_map_on(monkeypatch):
    built = []
    init = ModelMap.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(ModelMap, "__init__", counting)
    report = gd.check(zoo.mlp(depth=4), torch.randn(8, 64))
    assert len(built) == 1
    assert report.model_map is built[0]
    assert len(report.model_map.layers) == report.data["map"]["layers"]
    assert "model_map" not in report.to_dict() and "model_map" not in json.loads(report.to_json())["data"]


def test_check_without_probe_also_traces_once(monkeypatch):
    built = []
    init = ModelMap.__init__
    monkeypatch.setattr(ModelMap, "__init__", lambda self, *a, **k: (built.append(self), init(self, *a, **k))[1])
    report = gd.check(zoo.mlp(depth=4), torch.randn(8, 64), probe=False)
    assert len(built) == 1 and report.model_map is built[0]


# ---------------------------------------------------------------- rules -> verbs is one-way


def _graddoctor_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("graddoctor"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("graddoctor")}
    return found


@pytest.mark.parametrize("path", sorted((DIAGNOSE / "checktime").glob("*.py")) + sorted((DIAGNOSE / "training").glob("*.py"))
                         + [DIAGNOSE / "thresholds.py"], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rules_never_import_the_verbs(path):
    verbs = {"graddoctor.diagnose.checkup", "graddoctor.diagnose.watching"}
    assert not _graddoctor_imports(path) & verbs


def test_training_rules_share_thresholds_not_each_other():
    rule_files = {"activations", "gradients", "loss", "nonfinite"}
    allowed = {"gradients": {"through_time"}, "through_time": {"loss"}}  # vanishing through time
    for name in rule_files | {"through_time"}:
        imported = {m.rpartition(".")[2] for m in _graddoctor_imports(DIAGNOSE / "training" / f"{name}.py")
                    if m.startswith("graddoctor.diagnose.training.")}
        assert imported & (rule_files | {"through_time"}) <= allowed.get(name, set()), name


def test_shared_thresholds_have_one_home():
    from graddoctor.diagnose.training import activations, gradients, loss

    assert loss.VANISH_ORDERS is thresholds.VANISH_ORDERS is gradients.VANISH_ORDERS
    assert loss.SAT_FRAC is thresholds.SAT_FRAC is activations.SAT_FRAC
    assert static.BN_MIN_BATCH == thresholds.BN_MIN_BATCH < thresholds.BN_INSERT_MIN_BATCH


def test_small_batch_batchnorm_threshold_is_the_shared_one():
    net = zoo.mlp(depth=3, norm="batch")
    x = torch.randn(thresholds.BN_MIN_BATCH, 64)
    m_small, m_ok = ModelMap(net, x[:-1]), ModelMap(net, x)
    assert static.small_batch_batchnorm(m_small, net)[0].evidence["threshold"] == thresholds.BN_MIN_BATCH
    assert static.small_batch_batchnorm(m_ok, net) == []


# ---------------------------------------------------------------- facts from kinds


@pytest.mark.parametrize("fan_in, fan_out", [(64, 64), (256, 32), (27, 128)])
def test_poor_init_target_is_kinds_target_std(fan_in, fan_out):
    w = torch.randn(fan_out, fan_in)
    std = float(w.std())
    assert static.init_gain(w, "Linear", "relu") == pytest.approx(std / kinds.target_std(fan_in, "relu"))
    lo, hi = sorted((kinds.glorot_std(fan_in, fan_out), kinds.target_std(fan_in, None)))
    for scale in (0.01, 1.0, 100.0):
        s = std * scale
        want = s / lo if s < lo else s / hi if s > hi else 1.0
        assert static.init_gain(w * scale, "Linear", "saturating") == pytest.approx(want, rel=1e-5)
    assert math.isclose(kinds.target_std(fan_in, "relu"), math.sqrt(2.0 / fan_in))  # He, as before


def test_dead_relu_reads_the_dying_kinds_of_kinds():
    from graddoctor.diagnose.training.sites import dying_sites

    acts = [{"name": k, "kind": k, "family": kinds.family(k), "is_output": False} for k in kinds.KINDS]
    assert {s["name"] for s in dying_sites({"activations": acts})} == set(kinds.DYING)


# ---------------------------------------------------------------- recurrence, computed before the rules


class _Cell(nn.Module):
    def __init__(self, gated: bool) -> None:
        super().__init__()
        self.lin, self.gated, self.gate = nn.Linear(8, 4), gated, nn.Sigmoid()  # a module: one site

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], 4)
        for t in range(x.shape[1]):
            z = self.lin(torch.cat([x[:, t], h], dim=1))
            h = self.gate(z) * h + torch.tanh(z) if self.gated else torch.tanh(z)
        return h


@pytest.mark.parametrize("model, x, want", [
    (nn.RNN(4, 4), torch.randn(10, 2, 4), "vanilla"),
    (nn.GRU(4, 4), torch.randn(10, 2, 4), "gated"),
    (nn.Sequential(nn.Linear(4, 4), nn.Tanh()), torch.randn(2, 4), None),
    (_Cell(gated=False), torch.randn(2, thresholds.MIN_STEPS, 4), "vanilla"),
    (_Cell(gated=True), torch.randn(2, thresholds.MIN_STEPS, 4), "gated"),
    (_Cell(gated=False), torch.randn(2, thresholds.MIN_STEPS - 1, 4), None),
])
def test_recurrence(model, x, want):
    assert recurrence(model, ModelMap(model, x)) == want


def test_the_training_rules_entry_keeps_its_public_name():
    from graddoctor.diagnose.training import diagnose, training_findings

    assert gd.rules.diagnose is diagnose is training_findings
