"""A small, fast subset of the real-architecture suite (``benchmarks/realworld/check_suite.py``).

Healthy models people use must get no error finding; broken variants, whose fault the suite
confirms by plain torch, must be caught with their code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import graddoctor as gd

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "realworld"
sys.path.insert(0, str(SUITE))

from check_suite import by_name, run_case  # noqa: E402
from zoo_vision import resnet18  # noqa: E402

GRADIENT_CODES = {"vanishing-gradient", "exploding-gradient", "signal-collapse", "signal-explosion"}


@pytest.mark.parametrize("name", ["resnet18-zero-init", "clip-logit-scale", "mlp-mixer", "regnety-s1b1"])
def test_healthy_zoo_replicas_get_no_error(name: str):
    outcome, report = run_case(by_name(name))
    assert outcome.error is None and outcome.errors == [], str(report)
    assert not (set(outcome.codes) & GRADIENT_CODES), str(report)


def test_zero_init_residual_branches_are_not_yet_on_the_path():
    """The branch layers of a zero-init ResNet get exactly-zero gradients at init; they are left out
    of the trend (the base repo fitted log10(1e-45) through them and reported +-7-9 orders)."""
    torch.manual_seed(0)
    model, x = resnet18(), torch.randn(8, 3, 32, 32)
    p = gd.check(model, x).data["probe"]
    zero = [n for n, g in zip(p["layers"], p["grad_rms"]) if g == 0.0]
    assert len(zero) >= 8 and all(".conv" in n for n in zero)  # every branch's convs
    assert all(n.endswith("bn2.weight") for n in p["zero_params"]) and len(p["zero_params"]) == 8
    # the control: the same layers with a nonzero gain get a gradient
    torch.manual_seed(0)
    p2 = gd.check(resnet18(zero_init_residual=False), x).data["probe"]
    assert min(p2["grad_rms"]) > 0 and p2["zero_params"] == []


def test_tuple_output_hf_model_uses_its_own_loss():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    outcome, report = run_case(by_name("gpt2-tuple-output"))
    assert outcome.errors == [] and report.data["probe"]["loss_source"] == "model"
    torch.manual_seed(0)
    model, inputs = by_name("gpt2-tuple-output").build()
    loss = model(**inputs)[0]
    assert report.data["probe"]["loss"] == pytest.approx(float(loss.detach()), rel=1e-5)


@pytest.mark.parametrize("name,code", [("mlp8-relu-dead-bias", "vanishing-gradient"),
                                       ("resmlp20-no-norm", "signal-explosion")])
def test_broken_variants_are_caught_and_confirmed(name: str, code: str):
    outcome, report = run_case(by_name(name))
    assert outcome.confirmed, outcome.truth  # the fault is real, by plain torch
    assert outcome.codes.get(code) == "error", str(report)


def test_a_zero_head_does_not_hide_a_dead_network():
    """A zero-init head (timm's MLP-Mixer) makes every hidden gradient zero at init: not vanishing.
    Units dead on the whole path (bias -20) make them zero too, with no zero parameter: vanishing."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32),
                        nn.ReLU(), nn.Linear(32, 4))
    nn.init.zeros_(net[6].weight)
    x = torch.randn(8, 16)
    assert "vanishing-gradient" not in gd.check(net, x).codes
    nn.init.normal_(net[6].weight, std=0.1)
    for i in (0, 2, 4):
        nn.init.constant_(net[i].bias, -20.0)
    (f,) = gd.check(net, x).by_code("vanishing-gradient")
    assert f.severity == "error" and f.evidence["zero_gradient_input_side"] == 3
