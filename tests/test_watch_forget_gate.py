"""watch sees a closed LSTM forget gate / GRU update gate: vanishing through time.

The task needs the first input 150 steps later (label = its sign). With the forget-gate bias at
-3 the cell keeps 5% of its state per step (a memory of ~1 step) and the loss sits at log 2:
``vanishing-gradient`` on the recurrent layer, from the gate bias watch records at attach. A
default-init gate (bias near 0) and a gate started open (+1) on the same task stay silent,
whatever their loss does. The meta entry (``gate_memory``) and the step field (``gate_bias``)
are checked on every run.
"""

from __future__ import annotations

import math

import pytest
import torch

import graddoctor as gd
from graddoctor.diagnose.training import training_findings

T, H, BATCH, STEPS = 150, 16, 16, 60


class Net(torch.nn.Module):
    def __init__(self, cell: str, keep_bias: float | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = getattr(torch.nn, cell)(1, H, batch_first=True)
        self.head = torch.nn.Linear(H, 2)
        if keep_bias is not None:  # LSTM gates i, f, g, o; GRU r, z, n: the keep gate is [H:2H]
            with torch.no_grad():
                for name, p in self.rnn.named_parameters():
                    if name.startswith("bias"):
                        p.zero_()
                        p[H:2 * H] = keep_bias / 2  # split over bias_ih and bias_hh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _run(cell: str, keep_bias: float | None, seq: int = T) -> tuple[dict, list[dict], gd.Report]:
    torch.set_num_threads(1)
    model = Net(cell, keep_bias)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(1)
    with gd.watch(model, optimizer=opt, example_inputs=torch.randn(2, seq, 1, generator=g)) as w:
        for _ in range(STEPS):
            x = torch.randn(BATCH, seq, 1, generator=g)
            loss = torch.nn.functional.cross_entropy(model(x), (x[:, 0, 0] > 0).long())
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    meta, steps = w.records()
    return meta, steps, w.report()


@pytest.fixture(scope="module")
def runs() -> dict:
    return {"lstm-3": _run("LSTM", -3.0), "lstm-default": _run("LSTM", None), "lstm+1": _run("LSTM", 1.0),
            "gru-3": _run("GRU", -3.0, seq=100)}


def _gate(meta: dict) -> dict:
    return next(ly for ly in meta["layers"] if ly["name"] == "rnn")["gate_memory"]


def _vanishing(report: gd.Report) -> list[gd.Finding]:
    return [f for f in report.findings if f.code == "vanishing-gradient"]


def test_closed_forget_gate_lstm_fires(runs: dict) -> None:
    meta, steps, report = runs["lstm-3"]
    gm = _gate(meta)
    assert gm["gate"] == "forget" and gm["bias"] == pytest.approx(-3.0)
    assert gm["memory_steps"] == pytest.approx(1 / (1 - 1 / (1 + math.exp(3))), rel=1e-3)
    assert gm["seq_len"] == T
    assert -3.0 < steps[-1]["gate_bias"]["rnn"] < -2.5  # read again at each flush: it moved a little
    (f,) = _vanishing(report)
    assert f.layers == ["rnn"] and f.evidence["seq_len"] == T and f.evidence["gate_bias"] == pytest.approx(-3.0)
    assert f.evidence["memory_steps"] < 1.1 and f.evidence["gate_bias_end"] == steps[-1]["gate_bias"]["rnn"]
    assert "orthogonal-init" in f.remedies and "Gers" in f.reference and "150 steps" in f.message
    # the plateau now names its cause instead of blaming the data
    plateau = [p for p in report.findings if p.code == "loss-plateau"]
    assert plateau and plateau[0].evidence["gradient_evidence"] == "closed-gate"
    assert "suspect the data" not in plateau[0].message


@pytest.mark.parametrize(("case", "bias"), [("lstm-default", None), ("lstm+1", 1.0)])
def test_open_forget_gate_lstm_silent(runs: dict, case: str, bias: float | None) -> None:
    meta, steps, report = runs[case]
    gm = _gate(meta)
    assert gm["gate"] == "forget" and gm["seq_len"] == T and "rnn" in steps[-1]["gate_bias"]
    if bias is None:  # default init: b_ih, b_hh ~ U(-1/sqrt(H), 1/sqrt(H)), a mean near 0
        assert abs(gm["bias"]) < 0.5 and 1.3 < gm["memory_steps"] < 3
    else:
        assert gm["bias"] == pytest.approx(bias) and gm["memory_steps"] == pytest.approx(3.718, abs=1e-3)
    assert not _vanishing(report)  # the loss may sit at log 2 (a hard task), the gate is no cause


def test_closed_update_gate_gru_fires(runs: dict) -> None:
    meta, _, report = runs["gru-3"]
    gm = _gate(meta)
    assert gm["gate"] == "update" and gm["bias"] == pytest.approx(-3.0) and gm["seq_len"] == 100
    (f,) = _vanishing(report)
    assert f.layers == ["rnn"] and f.evidence["gate"] == "update" and "update (z) gate" in f.message


def test_gate_rule_on_records() -> None:
    """No sequence length (a packed sequence, no map): still fires, and says so; a short sequence
    over which the state path loses < 3 orders, or a moving loss, does not."""
    gm = {"gate": "forget", "bias": -3.0, "retain": 0.0474, "memory_steps": 1.0498, "seq_len": None}
    meta = {"layers": [{"name": "lstm", "kind": "rnn", "type": "LSTM", "gate_memory": gm}], "activations": []}
    flat = [{"step": t, "loss": 0.69 + 0.01 * (t % 3)} for t in range(1, 61)]
    (f,) = [f for f in training_findings(meta, flat) if f.code == "vanishing-gradient"]
    assert f.evidence["seq_len"] is None and "not recorded" in f.message
    short = {"layers": [{**meta["layers"][0], "gate_memory": {**gm, "seq_len": 2}}], "activations": []}
    assert "vanishing-gradient" not in {f.code for f in training_findings(short, flat)}
    falling = [{"step": t, "loss": 0.69 / t} for t in range(1, 61)]
    assert "vanishing-gradient" not in {f.code for f in training_findings(meta, falling)}


def _regression_records(tail) -> list[dict]:
    """A fall from 1.17 to the constant-prediction MSE 0.167 in 50 steps, then ``tail(t)``."""
    rng = torch.Generator().manual_seed(0)
    noise = (torch.rand(600, generator=rng) - 0.5) * 0.04
    return [{"step": t, "loss": (1.17 - t * 0.02 if t <= 50 else tail(t)) + float(noise[t - 1])}
            for t in range(1, 601)]


def test_a_closed_gate_on_a_run_sitting_at_its_constant_prediction_loss_fires() -> None:
    """Trial D: the adding problem (T=60) with a forget bias of -4 fell at once to MSE 0.167 and sat
    there for 1,150 steps (chrono init: 0.008); the rule read only a loss near its start."""
    gm = {"gate": "forget", "bias": -4.0, "retain": 0.018, "memory_steps": 1.0183, "seq_len": 60}
    meta = {"layers": [{"name": "rnn", "kind": "rnn", "type": "LSTM", "gate_memory": gm}], "activations": []}

    def gate(records, end=-3.9):
        return [f for f in training_findings(meta, [{**s, "gate_bias": {"rnn": end}} for s in records])
                if f.code == "vanishing-gradient"]

    (f,) = gate(_regression_records(lambda t: 0.167))
    assert f.evidence["loss_evidence"] == "flat since" and "has not improved since step 401" in f.message
    assert f.remedies[0] == "forget-bias"
    assert not gate(_regression_records(lambda t: 0.167 * math.exp(-(t - 50) / 150)))  # still learning
    assert not gate(_regression_records(lambda t: 0.02))  # converged: under 5% of its start
    assert not gate(_regression_records(lambda t: 0.167), end=-1.0)  # the gate opened since attach
