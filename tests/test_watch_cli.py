"""`graddoctor watch-report RUN_DIR`: prints the Report of a run log; exit 0 / 1 (error finding) / 2."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import graddoctor as gd
from graddoctor.cli import main
from graddoctor.diagnose.watching import build_report
from graddoctor.runlog import read_run


def _run(tmp_path, depth, act, steps=60):
    torch.manual_seed(0)
    mods = []
    for _ in range(depth):
        mods += [nn.Linear(16, 16), act()]
    net = nn.Sequential(*mods, nn.Linear(16, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    with gd.watch(net, opt, tmp_path, activation_every=5, update_every=5) as w:
        for _ in range(steps):
            x = torch.randn(32, 16, generator=g)
            loss = nn.functional.cross_entropy(net(x), (x[:, 0] > 0).long())
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    return tmp_path


@pytest.mark.parametrize("depth,act", [(2, nn.ReLU), (12, nn.Sigmoid)])
def test_watch_report_prints_and_exit_code_follows_report(tmp_path, depth, act):
    run = _run(tmp_path, depth, act)
    report = build_report(*read_run(run))
    res = CliRunner().invoke(main, ["watch-report", str(run)])
    assert res.exit_code == (0 if report.ok else 1), res.output
    assert "60 steps" in res.output and "|grad| median, last 10 steps" in res.output
    assert report.summary().split(" - ")[0] in res.output.replace("\n", " ")
    js = CliRunner().invoke(main, ["watch-report", str(run), "--json"])
    assert js.exit_code == res.exit_code
    assert json.loads(js.output)["codes"] == sorted(report.codes)


def test_deep_sigmoid_run_reports_vanishing_when_rules_present(tmp_path):
    pytest.importorskip("graddoctor.diagnose.training")
    run = _run(tmp_path, 12, nn.Sigmoid, steps=120)
    res = CliRunner().invoke(main, ["watch-report", str(run)])
    assert res.exit_code == 1 and "vanishing-gradient" in res.output


def test_watch_report_bad_input_exits_2(tmp_path):
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no watch run log" in res.output
    (tmp_path / "watch.jsonl").write_text("")
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path)])
    assert res.exit_code == 2 and "no watch records" in res.output


def test_a_log_of_several_runs_names_them_and_run_picks_one(tmp_path):
    _run(tmp_path, 2, nn.ReLU, steps=12)
    _run(tmp_path, 2, nn.ReLU, steps=8)  # the same log_dir again: a second run in the file
    first_id = read_run(tmp_path, run="first")[0]["run_id"]
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path)])
    assert res.exit_code == 0 and "8 steps, 3 layers" in res.output, res.output
    assert "holds 2 runs; showing run 2 of 2" in res.stderr and "8 steps (1-8)   <- shown" in res.stderr
    assert f"1  {first_id}  12 steps (1-12)\n" in res.stderr
    for pick in ("1", "first", first_id):
        res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", pick, "--json"])
        assert res.exit_code == 0 and "12 steps (1-12)   <- shown" in res.stderr, res.output
        assert len(json.loads(res.stdout)["data"]["steps"]) == 12
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", "3"])
    assert res.exit_code == 2 and "has no run '3'" in res.output
    html = CliRunner().invoke(main, ["report", str(tmp_path), "--run", "first"])
    assert html.exit_code == 0 and "showing run 1 of 2" in html.stderr, html.output


def test_a_log_of_one_run_has_no_note(tmp_path):
    res = CliRunner().invoke(main, ["watch-report", str(_run(tmp_path, 2, nn.ReLU, steps=4)), "--run", "1"])
    assert res.exit_code == 0 and res.stderr == "", res.output
