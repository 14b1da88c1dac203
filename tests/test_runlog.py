"""The run-log line format and reading it back (graddoctor.runlog.format / .read)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from graddoctor import runlog
from graddoctor.errors import InputError
from graddoctor.runlog import format as fmt
from graddoctor.runlog import read


def test_package_re_exports_format_and_read():
    assert runlog.encode is fmt.encode and runlog.VERSION == fmt.VERSION == 3
    assert runlog.read_run is read.read_run and runlog.carry_weights is read.carry_weights


def test_encode_decode_round_trip_of_non_finite_floats():
    rec = {"type": "step", "step": 3, "grad_norm": {"0": math.inf, "1": None}, "loss": -math.inf}
    line = fmt.encode(rec)
    assert "Infinity" not in line and "NaN" not in line
    assert fmt.decode_floats(json.loads(line)) == rec


def test_read_run_skips_a_partial_last_line_and_picks_runs(tmp_path):
    lines = [{"type": "meta", "run_id": "a"}, {"type": "step", "step": 1, "weight_norm": {"0": 1.0}},
             {"type": "step", "step": 2}, {"type": "meta", "run_id": "b"}, {"type": "step", "step": 1}]
    (tmp_path / fmt.FILENAME).write_text("\n".join(map(fmt.encode, lines)) + '\n{"type": "st')
    meta, steps = read.read_run(tmp_path, run="a")
    assert meta["run_id"] == "a" and steps[1]["weight_norm"] == {"0": 1.0} and steps[1]["weight_step"] == 1
    assert read.read_run(tmp_path)[0]["run_id"] == "b" and read.read_run(tmp_path, "first")[0]["run_id"] == "a"
    with pytest.raises(InputError, match="no run 'c'"):
        read.read_run(tmp_path, run="c")


def test_a_corrupt_line_before_the_last_is_skipped_and_counted(tmp_path):
    (tmp_path / fmt.FILENAME).write_text('{"type": "meta"}\nnot json\n{"type": "step", "step": 1}\n')
    meta, steps = read.read_run(tmp_path)
    assert [s["step"] for s in steps] == [1] and meta["malformed"] == {"lines": 1, "fields": 0}


def test_a_healthy_run_with_histograms_reads_back_whole(tmp_path):
    """Every field watch writes passes the reader's type checks: nothing dropped, histograms kept."""
    import graddoctor as gd
    from graddoctor.runlog import read_run

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gd.watch(net, opt, tmp_path, activation_every=2) as w:
        for _ in range(6):
            net(torch.randn(8, 4)).sum().backward()
            opt.step()
            opt.zero_grad()
            w.step()
    meta, steps = read_run(tmp_path)
    assert "malformed" not in meta, meta.get("malformed")
    hists = [st["hist"] for s in steps for st in s.get("act", {}).values() if "hist" in st]
    assert hists and all(sum(h["counts"]) > 0 for h in hists)
