"""The remedy registry: one signature, self-registration, options checked, activation facts from kinds."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn

from graddoctor import kinds
from graddoctor.codes import REMEDY_IDS
from graddoctor.errors import InputError
from graddoctor.fix import remedies
from graddoctor.fix.remedies import init
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import REMEDIES, RemedyContext, register


def test_every_remedy_id_resolves_to_a_function_with_the_one_signature():
    assert set(REMEDY_IDS) <= set(REMEDIES)
    for rid in REMEDY_IDS:
        entry = remedies.get(rid)
        assert entry.id == rid
        assert list(inspect.signature(entry.fn).parameters) == ["model", "layers", "ctx"]


def test_each_remedy_is_registered_by_its_own_module():
    home = {"relu": "activation", "leaky-relu": "activation", "he-init": "init", "lsuv-init": "init",
            "batchnorm": "norm", "groupnorm": "norm", "rezero": "residual", "clip-agc": "clip",
            "lstm": "advice", "lower-lr": "advice"}
    for rid, module in home.items():
        assert REMEDIES[rid].fn.__module__ == f"graddoctor.fix.remedies.{module}"


def test_register_serves_several_ids_and_refuses_duplicates():
    @register("t-one", "t-two", family="custom", summary="{id} says its id")
    def says(model, layers, ctx):  # noqa: ANN001, ANN202
        return model, Change(ctx.remedy, list(layers or []), "test", "advice")

    try:
        _, change = remedies.apply("t-two", nn.Linear(1, 1), layers=["a"])
        assert (change.remedy, change.modules, REMEDIES["t-one"].summary) == ("t-two", ["a"], "t-one says its id")
        with pytest.raises(ValueError, match="registered twice"):
            register("t-one", family="custom", summary="again")(says)
    finally:
        for rid in ("t-one", "t-two"):
            REMEDIES.pop(rid, None)


def test_options_reach_the_remedy_and_unknown_ones_fail_clearly():
    _, change = remedies.apply("clip-value", nn.Linear(1, 1), value=0.25)
    assert change.details["value"] == 0.25
    _, change = remedies.apply("lower-lr", nn.Linear(1, 1), factor=4.0)
    assert change.details["factor"] == 4.0
    with pytest.raises(InputError, match="remedy 'clip-norm' takes value; got vlaue"):
        remedies.apply("clip-norm", nn.Linear(1, 1), vlaue=2.0)
    with pytest.raises(InputError, match="'lstm' takes no options"):
        remedies.apply("lstm", nn.Linear(1, 1), value=1.0)


def test_layers_restrict_the_remedies_that_act_on_modules():
    net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    x = torch.randn(32, 4)
    new, change = remedies.apply("relu", net, x, layers=["3"])
    assert change.modules == ["3"] and isinstance(new[1], nn.Sigmoid) and isinstance(new[3], nn.ReLU)
    _, change = remedies.apply("he-init", net, x, layers=["2"])
    assert change.modules == ["2"]
    _, change = remedies.apply("batchnorm", net, x, layers=["0"])
    assert change.modules == ["0"]


def test_a_remedy_given_a_map_traces_nothing(monkeypatch):
    from graddoctor.modelmap import ModelMap

    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8),
                        nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(32, 4)
    mm = ModelMap(net, x)
    monkeypatch.setattr(ModelMap, "__init__", lambda *a, **k: pytest.fail("traced again"))
    for rid in ("relu", "he-init", "lsuv-init", "batchnorm", "groupnorm", "rezero"):
        remedies.apply(rid, net, x, mmap=mm)
    remedies.get("relu").fn(net, None, RemedyContext("relu", x, mm))


def test_init_gains_and_stds_are_the_kinds_numbers():
    old = {"relu": math.sqrt(2), "gelu": math.sqrt(2), "softplus": math.sqrt(2), "tanh": 5 / 3,
           "hardtanh": 5 / 3, "selu": 0.75, "sigmoid": 1.0, None: 1.0}
    for act, g in old.items():
        assert init.gain(act) == pytest.approx(g) == pytest.approx(kinds.gain(act))
    assert init.gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    w = torch.empty(50, 200)
    assert init.expected_std("he-init", w, "relu") == pytest.approx(kinds.target_std(200, "relu"))
    assert init.expected_std("xavier-init", w, "tanh") == pytest.approx(kinds.glorot_std(200, 50))
    assert init.expected_std("xavier-init", w, "relu") == pytest.approx(
        math.sqrt(2) * kinds.glorot_std(200, 50))
