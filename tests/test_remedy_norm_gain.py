"""``norm-gain``: normalisation gains at exactly 0 set to 1 (other weights kept), proposed by the
init probe's zero-weight findings and planned by ``repair``.

Before, a Llama whose RMSNorm gains were zeroed got ``he-init``/``lsuv-init``/``orthogonal-init``
(re-draws of weights that were fine) or no remedy at all, and ``repair`` changed nothing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.fix.remedies import RemedyContext
from graddoctor.fix.remedies.norm_gain import norm_gain, zero_gains
from test_check_zero_stationary import _llama

transformers = pytest.importorskip("transformers")


def test_the_remedy_sets_only_the_zero_gains_and_keeps_everything_else():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 8), nn.BatchNorm1d(8),
                        nn.Linear(8, 2))
    nn.init.zeros_(net[1].weight)
    with torch.no_grad():
        net[4].weight.fill_(0.5)
    new, change = norm_gain(net, None, RemedyContext("norm-gain"))
    assert change.kind == "applied" and change.modules == ["1"]
    assert new[1].weight.eq(1).all() and new[4].weight.eq(0.5).all()  # a nonzero gain is the user's
    assert torch.equal(new[0].weight, net[0].weight) and net[1].weight.eq(0).all()  # a copy
    assert norm_gain(new, None, RemedyContext("norm-gain"))[1].kind == "advice"
    assert norm_gain(net, ["0", "4"], RemedyContext("norm-gain"))[1].kind == "advice"  # not zero norms


def test_a_frozen_zero_gain_is_left_alone():
    ln = nn.LayerNorm(3)
    nn.init.zeros_(ln.weight)
    ln.weight.requires_grad_(False)
    assert zero_gains(ln) == []


@pytest.mark.parametrize("zero", ["blocks", "all"])
def test_a_llama_with_zero_norm_gains_is_repaired_by_norm_gain(zero):
    model, batch = _llama(zero)
    report = gd.check(model, batch)
    (f,) = report.by_code("vanishing-gradient")
    assert f.remedies == ["norm-gain"], str(report)
    result = gd.repair(model, report, batch)
    change = next(c for c in result.changes if c.remedy == "norm-gain")
    stationary = {n.rpartition(".")[0] for n in f.evidence["zero_params_stationary"]}
    # most gains are zero: check's poor-init of norm gains names every zero one (those that would
    # start moving too: at Adam's pace, ~lr per step, far from 1), and all of them go back to 1
    zeroed = set(zero_gains(model))
    (small,) = [g for g in report.by_code("poor-init") if g.remedies == ["norm-gain"]]
    assert set(small.layers) == zeroed
    assert change.kind == "applied" and stationary <= set(change.modules) == zeroed
    assert [c.remedy for c in result.changes if c.kind == "applied"] == ["norm-gain"]  # nothing re-drawn
    before = dict(model.named_parameters())
    for n, p in result.model.named_parameters():
        if n.rpartition(".")[0] not in zeroed:
            assert torch.equal(p, before[n]), n
    assert "vanishing-gradient" not in gd.check(result.model, batch).codes


def _bert(zero_ln: bool):
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    m = transformers.BertForSequenceClassification(transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=32, num_labels=2))
    if zero_ln:
        with torch.no_grad():
            for n, p in m.named_parameters():
                if "LayerNorm.weight" in n:
                    p.zero_()
    ids = torch.randint(0, 100, (64, 16), generator=torch.Generator().manual_seed(1))
    return m, {"input_ids": ids, "labels": (ids[:, 0] > 50).long()}


def test_a_bert_with_zero_layernorm_gains_gets_norm_gain_only_and_trains():
    """Before: a ReLU swap of the pooler, a He re-draw of every Linear and a manual 'residual'
    on a BERT (whose gains stayed 0); its loss stayed at ln 2."""
    model, batch = _bert(zero_ln=True)
    result = gd.repair(model, gd.check(model, batch), batch)
    assert [(c.remedy, c.kind) for c in result.changes] == [("norm-gain", "applied")]
    new = result.model
    assert all(float(p.min()) == 1.0 for n, p in new.named_parameters() if "LayerNorm.weight" in n)
    opt = torch.optim.Adam(new.parameters(), 1e-3)
    for _ in range(40):
        opt.zero_grad()
        loss = new(**batch).loss
        loss.backward()
        opt.step()
    assert float(loss) < 0.5  # ln 2 = 0.69 before the repair, and stuck there


def test_a_healthy_bert_is_left_alone_by_repair():
    """check's only finding is an info (the pooler's tanh, applied once): no fault, no remedy."""
    model, batch = _bert(zero_ln=False)
    report = gd.check(model, batch)
    assert {f.severity for f in report.findings} <= {"info"}
    assert gd.repair(model, report, batch).changes == []
