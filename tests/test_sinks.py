"""Sinks: JSONL round trip (non-finite floats), TensorBoard read back, custom Sink objects."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.runlog import encode, read_run
from graddoctor.runlog.sinks import Sink
from graddoctor.runlog.sinks.jsonl import JsonlSink


def _train(model, opt, w, steps, nan_at=None):
    for i in range(steps):
        loss = model(torch.randn(4, 3)).pow(2).mean()
        loss.backward()
        if i == nan_at:
            model[0].weight.grad[0, 0] = math.nan
        opt.step()
        opt.zero_grad()
        w.step(loss)


def test_jsonl_nonfinite_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with gd.watch(model, opt, tmp_path, flush_every=2) as w:
        _train(model, opt, w, 3, nan_at=1)
    text = (tmp_path / "watch.jsonl").read_text()
    assert "NaN" not in text and '"nan"' in text  # strict JSON, non-finite as strings
    meta, steps = read_run(tmp_path)
    assert math.isnan(steps[1]["grad_norm"]["0"]) and steps[1]["nonfinite"]["0"] == 1
    assert [encode(x) for x in steps] == [encode(x) for x in w.records()[1]]


def test_read_run_tolerates_truncated_last_line_and_skips_corruption(tmp_path):
    s = JsonlSink(tmp_path)
    s.write_meta({"type": "meta", "version": 1, "run_id": "r", "layers": []})
    s.write_steps([{"type": "step", "step": 1, "loss": 1.0}, {"type": "step", "step": 2, "loss": 0.5}])
    s.close()
    with open(tmp_path / "watch.jsonl", "a") as f:
        f.write('{"type": "step", "step": 3, "lo')
    meta, steps = read_run(tmp_path)
    assert [x["step"] for x in steps] == [1, 2]
    lines = (tmp_path / "watch.jsonl").read_text().splitlines()
    (tmp_path / "watch.jsonl").write_text("\n".join([lines[0], "garbage", *lines[1:]]) + "\n")
    meta, steps = read_run(tmp_path)  # a corrupt line in the middle: skipped and counted
    assert [x["step"] for x in steps] == [1, 2] and meta["malformed"]["lines"] == 1  # the partial last line is not counted
    with pytest.raises(InputError, match="no watch run log"):
        read_run(tmp_path / "missing")


def test_two_runs_in_one_file_and_reattach(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = gd.watch(model, opt, tmp_path)
    _train(model, opt, w, 2)
    w.detach()
    w.attach()  # re-attach: meta again (same run_id), steps continue
    _train(model, opt, w, 2)
    w.detach()
    meta, steps = read_run(tmp_path)
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    with gd.watch(model, opt, tmp_path) as w2:  # a second run appended to the same file
        _train(model, opt, w2, 1)
    meta2, steps2 = read_run(tmp_path)
    assert meta2["run_id"] == w2.run_id != meta["run_id"] and [s["step"] for s in steps2] == [1]
    assert read_run(tmp_path, run="first")[0]["run_id"] == w.run_id


def test_tensorboard_sink_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.watch(model, opt, tmp_path, sinks=("jsonl", "tensorboard"), activation_every=1) as w:
        _train(model, opt, w, 3)
    steps = w.records()[1]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"loss", "grad_norm/0", "grad_norm/2", "act/1/dead_frac"} <= set(tags)
    got = [(e.step, e.value) for e in acc.Scalars("grad_norm/2")]
    assert [s for s, _ in got] == [1, 2, 3]
    assert [v for _, v in got] == pytest.approx([s["grad_norm"]["2"] for s in steps], rel=1e-6)
    assert [e.value for e in acc.Scalars("loss")] == pytest.approx([s["loss"] for s in steps], rel=1e-6)


def test_custom_sink_object():
    class Collect:
        def __init__(self):
            self.meta, self.steps, self.closed = None, [], 0

        def write_meta(self, meta):
            self.meta = meta

        def write_steps(self, steps):
            self.steps += steps

        def close(self):
            self.closed += 1

    c = Collect()
    assert isinstance(c, Sink)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gd.watch(model, opt, "unused-dir-for-objects", sinks=[c], flush_every=2) as w:
        _train(model, opt, w, 3)
    assert c.meta["layers"][0]["name"] == "0" and [s["step"] for s in c.steps] == [1, 2, 3]
    assert c.closed == 1
    with pytest.raises(InputError, match="unknown sink"):
        gd.watch(model, opt, "x", sinks=["mlflow"])
    with pytest.raises(InputError, match="Sink"):
        gd.watch(model, opt, "x", sinks=[object()])


class _Counting:
    def __init__(self, fail: bool = False) -> None:
        self.meta, self.steps, self.fail = 0, 0, fail

    def write_meta(self, meta):
        self.meta += 1

    def write_steps(self, records):
        if self.fail:
            raise OSError("disk full")
        self.steps += len(records)

    def close(self):
        pass


def _six_steps(**kw):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt, flush_every=2, **kw) as w:
        for _ in range(6):
            loss = m(torch.randn(5, 4)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return w


def test_a_sink_object_without_log_dir_gets_the_records():
    sink = _Counting()
    w = _six_steps(sinks=[sink])
    assert (sink.meta, sink.steps) == (1, 6) and len(w.records()[1]) == 6


def test_a_failing_sink_is_dropped_with_a_warning_and_the_others_go_on(tmp_path):
    bad = _Counting(fail=True)
    with pytest.warns(UserWarning, match="_Counting sink failed .*disk full.*dropped"):
        w = _six_steps(sinks=[bad, "jsonl"], log_dir=tmp_path)
    assert w.failed is None and len(w.records()[1]) == 6
    assert len(read_run(tmp_path)[1]) == 6  # the JSONL file has every step


def test_a_failing_jsonl_sink_leaves_the_records_in_memory(tmp_path):
    class FullDisk(JsonlSink):
        def write_steps(self, records):
            raise OSError("disk full")

    with pytest.warns(UserWarning, match="FullDisk sink failed"):
        w = _six_steps(sinks=[FullDisk(tmp_path)], log_dir=tmp_path)
    assert w.failed is None and len(w.records()[1]) == 6  # from the failure on, kept in memory


@pytest.mark.parametrize("log_dir", [b"/tmp/gd-bytes", 123])
def test_a_log_dir_that_is_no_path_is_a_one_line_error(log_dir):
    m = nn.Linear(2, 2)
    with pytest.raises(InputError, match="log_dir must be a directory path"):
        gd.watch(m, torch.optim.SGD(m.parameters(), lr=0.1), log_dir=log_dir)
