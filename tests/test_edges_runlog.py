"""Run logs as a new user meets them: folders of several logs with ``--run RUN_ID``, a killed
run's log appended to, a non-UTF-8 or foreign file, every param group's learning rate, and
the demo's layer table of a repaired model whose layers were renamed."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from graddoctor.cli import main
from graddoctor.cli.demo import print_profiles
from graddoctor.runlog import FILENAME, encode, list_runs, read_run, step_lrs
from graddoctor.runlog.sinks.jsonl import JsonlSink
from graddoctor.runlog.sinks.wandb import step_payload

LAYERS = [{"name": "0", "type": "Linear", "kind": "linear", "depth": 1, "trainable": True}]


def _lines(run_id: str, steps: int = 3, **extra) -> list[str]:
    meta = {"type": "meta", "version": 3, "run_id": run_id, "layers": LAYERS, "activations": [], "config": {}}
    recs = [{"type": "step", "step": k, "loss": 1.0, "skipped": False, "lr": 0.1, "grad_norm": {"0": 0.5},
             "run_id": run_id, **extra} for k in range(1, steps + 1)]
    return [encode(r) for r in (meta, *recs)]


def _log(folder, *runs: str, **extra):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILENAME).write_text("".join(line + "\n" for r in runs for line in _lines(r, **extra)))
    return folder


def _one_line_exit_2(res, match: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in res.output, res.output


def test_run_id_over_a_folder_of_several_logs_reads_the_log_holding_it(tmp_path):
    _log(tmp_path / "a", "run-a")
    _log(tmp_path / "b", "run-b1", "run-b2")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--run", "run-b1", "-o", str(out)])
    assert res.exit_code == 0 and "reading" in res.stderr and "1 of the 2 run logs" in res.stderr, res.output
    assert "watch: b" in res.stdout and "watch: a" not in res.stdout and out.is_file()
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", "run-a", "--json"])
    assert res.exit_code == 0 and f"{tmp_path / 'a' / FILENAME}" in res.stderr, res.output
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--run", "nope", "-o", str(out)])
    _one_line_exit_2(res, "no run log in")
    assert "run-a" in res.output and "run-b2" in res.output  # the runs there, to pick from


def test_watch_report_on_a_folder_of_logs_names_them(tmp_path):
    _log(tmp_path / "broken", "x")
    _log(tmp_path / "repaired", "y")
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path)])
    _one_line_exit_2(res, "its subfolders hold 2 run logs")
    assert "broken" in res.output and "repaired" in res.output and "pass one of those folders" in res.output
    _log(tmp_path / "only", "z")
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path / "only" / ".."), "--run", "z"])
    assert res.exit_code == 0, res.output


def test_run_out_of_range_names_the_fix_and_first_last_ignore_case(tmp_path):
    _log(tmp_path, "a", "b")
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", "99"])
    _one_line_exit_2(res, "has no run '99' - pass --run first, last, a number from 1 to 2 or a run_id (a, b)")
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--run", "FIRST", "--no-layers"])
    assert res.exit_code == 0 and "showing run 1 of 2" in res.stderr, res.output


def test_a_run_appended_to_a_killed_runs_log_is_read(tmp_path):
    first = _lines("killed")
    (tmp_path / FILENAME).write_text("\n".join(first) + "\n" + first[-1][:15])  # killed mid-line
    sink = JsonlSink(tmp_path)  # the next run, same log_dir
    sink.write_meta({"type": "meta", "version": 3, "run_id": "next", "layers": LAYERS})
    sink.write_steps([{"type": "step", "step": 1, "loss": 0.5, "run_id": "next"}])
    sink.close()
    assert (tmp_path / FILENAME).read_text().splitlines()[len(first)] == first[-1][:15]  # its own line
    meta, steps = read_run(tmp_path)
    assert meta["run_id"] == "next" and [s["loss"] for s in steps] == [0.5] and "malformed" not in meta
    assert [r["run_id"] for r in list_runs(tmp_path)] == ["killed", "next"]


def test_a_log_already_glued_by_an_older_writer_is_read(tmp_path):
    first, second = _lines("killed"), _lines("next")
    (tmp_path / FILENAME).write_text("\n".join(first) + "\n" + first[-1][:15] + "\n".join(second) + "\n")
    meta, steps = read_run(tmp_path)
    assert meta["run_id"] == "next" and len(steps) == 3 and "malformed" not in meta


def test_non_utf8_and_foreign_files_are_one_line(tmp_path):
    (tmp_path / FILENAME).write_bytes(b"\xff\xfe\x00garbage\x80\n")
    for cmd in ("watch-report", "report"):
        _one_line_exit_2(CliRunner().invoke(main, [cmd, str(tmp_path)]), "is not a watch run log (not UTF-8 text)")
    (tmp_path / FILENAME).write_text('{"a": 1}\n[1, 2]\n')
    _one_line_exit_2(CliRunner().invoke(main, ["watch-report", str(tmp_path)]), "none of its 2 line(s)")


def test_report_warns_of_skipped_lines_as_watch_report_does(tmp_path):
    lines = _lines("a")
    (tmp_path / FILENAME).write_text("\n".join([*lines[:2], "{not json", *lines[2:]]) + "\n")
    res = CliRunner().invoke(main, ["report", str(tmp_path), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 0 and "skipped 1 malformed line(s)" in res.stderr, res.output


def test_every_param_groups_lr_is_read_and_shown(tmp_path):
    _log(tmp_path, "a", lrs=[0.1, 0.01])
    meta, steps = read_run(tmp_path)
    assert step_lrs(steps[-1]) == [0.1, 0.01] and "malformed" not in meta
    res = CliRunner().invoke(main, ["watch-report", str(tmp_path), "--no-layers"])
    assert "last lr per param group 1.00e-01 / 1.00e-02" in res.stdout, res.output
    payload = step_payload(steps[-1])
    assert payload["graddoctor/lr"] == 0.1 and payload["graddoctor/lr/group1"] == 0.01
    _log(tmp_path, "a", lrs=[0.1, "x"])  # a wrong entry spoils the group order: dropped, counted
    meta, steps = read_run(tmp_path)
    assert "lrs" not in steps[0] and meta["malformed"]["fields"] == 3 and step_lrs(steps[0]) == [0.1]


def test_demo_layer_table_names_each_runs_own_layers():
    c = Console(file=io.StringIO(), width=100, color_system=None)
    print_profiles(c, {"broken": [("0", 1e-9), ("2", 1e-3)],
                       "repaired": [("0.body.0", 1e-3), ("0", 1e-2), ("2", 1e-3)]})
    rows = c.file.getvalue().splitlines()
    assert "broken layer" in rows[1] and "repaired layer" in rows[1]
    assert rows[2].split()[:4] == ["0", "1.0e-09", "█", "0.body.0"], rows


def test_watch_records_every_param_groups_lr_and_the_log_reads_it_back(tmp_path):
    import torch

    import graddoctor as gd
    from graddoctor.runlog import read_run, step_lrs

    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    opt = torch.optim.SGD([{"params": net[0].parameters(), "lr": 0.1}, {"params": net[2].parameters(), "lr": 0.01}])
    with gd.watch(net, opt, log_dir=tmp_path) as w:
        for _ in range(3):
            loss = net(torch.randn(4, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    _, steps = read_run(tmp_path)
    assert [step_lrs(s) for s in steps] == [[0.1, 0.01]] * 3 and all(s["lr"] == 0.1 for s in steps)
