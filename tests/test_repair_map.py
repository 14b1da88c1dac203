"""A model is traced once per verb call: repair reuses the ModelMap check built (report.model_map)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.fix.repairing import repair, report_map
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding, Report

X = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def maps_built(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per ModelMap construction from now on."""
    built: list[int] = []
    original = ModelMap.__init__

    def counted(self: ModelMap, *args: object, **kwargs: object) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ModelMap, "__init__", counted)
    return built


def checked(model: nn.Module, *codes: str) -> Report:
    """A report carrying the map of ``model`` the way ``check`` attaches it (``report.model_map``,
    a ModelMap whose ``model`` is the model it traced)."""
    report = Report([Finding(c, "error", c) for c in codes])
    report.model_map = ModelMap(model, X)
    return report


def test_check_then_repair_traces_the_model_once(maps_built):
    net = zoo.mlp(depth=20, activation="sigmoid")
    report = gd.check(net, X)
    assert len(maps_built) == 1
    res = gd.repair(net, report, example_inputs=X)
    assert [c.remedy for c in res.changes] == ["relu", "he-init", "rezero"]
    assert len(maps_built) == 1  # repair reuses the map check attached (report.model_map)


def test_repair_reuses_the_reports_map_of_this_model(maps_built):
    net = zoo.mlp(depth=20, activation="sigmoid")
    report = checked(net, "vanishing-gradient", "saturating-hidden-activation", "poor-init")
    before = len(maps_built)
    res = repair(net, report, example_inputs=X, seed=1)
    assert [c.remedy for c in res.changes] == ["relu", "he-init", "rezero"]
    assert len(maps_built) == before  # planner, swap, re-init and skips share check's map
    fresh = repair(net, Report(report.findings), example_inputs=X, seed=1)
    assert repr(fresh.model) == repr(res.model)
    sa, sb = fresh.model.state_dict(), res.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_remedy_after_surgery_traces_the_new_model_once(maps_built):
    """Norm insertion wraps layers (``fc`` -> ``fc.0``): the re-init after it needs the new model's map."""
    net = zoo.mlp(depth=6)
    report = checked(net)
    before = len(maps_built)
    res = repair(net, report, example_inputs=X, remedies=["batchnorm", "he-init"])
    assert [c.kind for c in res.changes] == ["applied", "applied"]
    assert len(maps_built) == before + 1


def test_a_map_of_another_model_object_or_a_stale_one_is_not_used(maps_built):
    net = zoo.mlp(depth=6, activation="tanh")
    report = checked(net, "saturating-hidden-activation")
    twin = copy.deepcopy(net)
    assert report_map(report, twin) is None  # the same architecture, another object
    before = len(maps_built)
    repair(twin, report, example_inputs=X)
    assert len(maps_built) == before + 1
    swapped = repair(net, report, example_inputs=X, inplace=True)  # surgery after check
    assert swapped.model is net and report_map(report, net) is None  # its map is stale now


def test_no_map_without_a_report_map_or_inputs(maps_built):
    net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 1))
    res = repair(net, [Finding("saturating-hidden-activation", "warning", "sigmoid")])
    assert [c.remedy for c in res.applied] == ["relu", "he-init"] and not maps_built
