"""``graddoctor fix``: check, repair, check again, save state_dict + changes.json."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from graddoctor.cli import main
from graddoctor.fix.remedies.residual import Residual

MODELS = '''
import torch
from torch import nn
from graddoctor import zoo

def sigmoid_mlp():
    return zoo.mlp(depth=20, activation="sigmoid")

def with_inputs():
    return zoo.cnn(8, kind="plain"), torch.randn(2, 3, 8, 8)

def rnn():
    return zoo.rnn("rnn")
'''


def _write(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def test_fix_repairs_and_saves(tmp_path):
    path = _write(tmp_path)
    out = tmp_path / "fixed"
    res = CliRunner().invoke(main, ["fix", f"{path}:sigmoid_mlp", "--input-shape", "16,64", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "before:" in res.output and "vanishing-gradient" in res.output
    assert "[applied] relu on 19 module(s)" in res.output and "after:\n  graddoctor check: no findings" in res.output
    changes = json.loads((out / "changes.json").read_text())
    # 20 plain layers with a vanishing signal: swap, re-init and a ReZero skip path
    assert [c["remedy"] for c in changes["changes"]] == ["relu", "he-init", "rezero"]
    assert not changes["after"]["findings"] and changes["before"]["ok"] is False
    state = torch.load(out / "state_dict.pt")
    net = torch.load(out / "model.pt", weights_only=False)  # the skip path changes the layout
    assert any(isinstance(m, Residual) for m in net.modules())
    now = net.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], state[k]) for k in state)


def test_fix_with_factory_inputs_explicit_remedies_and_json(tmp_path):
    path = _write(tmp_path)
    res = CliRunner().invoke(main, ["fix", f"{path}:with_inputs", "--remedies", "groupnorm", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["changes"][0]["remedy"] == "groupnorm" and payload["changes"][0]["kind"] == "applied"
    assert "small-batch-batchnorm" in payload["before"]["codes"]
    assert "small-batch-batchnorm" not in payload["after"]["codes"]


def test_fix_exit_1_when_errors_remain_and_2_on_bad_input(tmp_path):
    path = _write(tmp_path)
    res = CliRunner().invoke(main, ["fix", f"{path}:rnn", "--input-shape", "4,2", "--seq", "300"])
    assert res.exit_code == 1 and "code change needed" in res.output and "nn.LSTM(2, 64" in res.output
    res = CliRunner().invoke(main, ["fix", f"{path}:nope", "--input-shape", "4,2"])
    assert res.exit_code == 2 and "has no callable 'nope'" in res.output
    res = CliRunner().invoke(main, ["fix", f"{path}:sigmoid_mlp", "--input-shape", "16,64", "--remedies", "magic"])
    assert res.exit_code == 2 and "unknown remedy 'magic'" in res.output
    res = CliRunner().invoke(main, ["fix", f"{path}:sigmoid_mlp", "--input-shape", "16,64", "--remedies", ","])
    assert res.exit_code == 2 and "names no remedy" in res.output
