"""The scenario suite stays wired: its invariants, and a handful of scenarios diagnosed end to end.

The full score is a benchmark (``python benchmarks/scenarios/score.py``); this
runs seven short scenarios (one per family of rules, and healthy MLP, LSTM and
pre-norm Transformer controls).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "scenarios"
sys.path.insert(0, str(SUITE))

from run import run_scenario  # noqa: E402
from scenarios import SCENARIOS, TRAINING_CODES, by_name  # noqa: E402
from score import _with_truth, score, table  # noqa: E402

from graddoctor.codes import FINDING_CODES  # noqa: E402
from graddoctor.diagnose.training import diagnose  # noqa: E402


def test_suite_invariants():
    assert len(SCENARIOS) >= 40
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    healthy = [s for s in SCENARIOS if not s.expected]
    assert len(healthy) >= len(SCENARIOS) / 2
    assert set(TRAINING_CODES) <= set(FINDING_CODES)
    archs = {s.arch for s in SCENARIOS}
    assert {"mlp", "cnn", "resnet", "rnn", "lstm", "gru", "transformer"} <= archs
    faults = " ".join(s.fault for s in SCENARIOS)
    for fault in ("activation", "init", "bias", "learning-rate", "depth", "sequence-length"):
        assert fault in faults
    for code in TRAINING_CODES:  # every training-time code has positives to be scored on
        assert sum(code in s.expected for s in SCENARIOS) >= 2, code
    names = {s.name for s in SCENARIOS}
    assert {"transformer-pre4", "transformer-post2", "lstm-digits-rows", "resnet8-bn-sgd"} <= names


SMOKE = ["mlp4-relu-he-adam", "lstm-digits-rows", "transformer-pre4", "mlp20-sigmoid-sgd",
         "mlp4-leaky-lr-huge", "mlp4-relu-75pct-dead", "mlp4-tanh-large-init"]


@pytest.mark.slow
def test_smoke_scenarios_get_exactly_their_codes():
    records = {}
    for name in SMOKE:
        sc = by_name(name)
        meta, steps = run_scenario(sc)
        assert len(steps) <= 200
        got = {f.code for f in diagnose(meta, steps)}
        assert got == _with_truth(sc, steps).expected == sc.expected, (name, got)
        records[name, 0] = meta, steps
    result = score(records)
    assert result["overall"]["false_alarm_rate"] == 0.0
    assert result["per_code"]["vanishing-gradient"]["recall"] == 1.0
    assert "| vanishing-gradient |" in table(result)
