"""Autofix rounds as events: one flushed line in the run log, linked to the findings that caused
it, read back into the offline report, shown in the text report, the HTML timeline and on the
loss and gradient figures.

The broken run is real: a 20-layer sigmoid MLP (Glorot's init, so the cause is the vanishing
gradient seen in training, not the init audit at attach) on digits trained with SGD under
``gd.watch(..., log_dir=..., autofix=True)``; the control is a healthy ReLU+He MLP.
"""

from __future__ import annotations

import io
import json
import re
import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.diagnose.watching import build_report
from graddoctor.runlog import FILENAME, encode, read_events, read_run
from graddoctor.train import sampled_batches

_DIGITS = data.load("digits", seed=0)
X, Y = _DIGITS.x_train.float(), _DIGITS.y_train
STEPS = 60


def _event_lines(path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if json.loads(line).get("type") == "event"]


def _train(model, log_dir, steps=STEPS, on_fix=None):
    """The user's loop under ``gd.watch(..., autofix=True)``; ``on_fix(w)`` right after a round."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    w = gd.watch(model, opt, log_dir, example_inputs=X[:32], autofix=True)
    batches = sampled_batches(X, Y, 32, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            x, y = next(batches)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            n = len(w.fixes)
            opt.step()  # a fix round runs in the optimizer's step post-hook
            if len(w.fixes) > n and on_fix is not None:
                on_fix(w)
            w.step(loss)
    return w


@pytest.fixture(scope="module")
def fixed_run(tmp_path_factory):
    """The sigmoid run: its log_dir, the watcher (detached), and the event lines read from the
    file right after each round, while the watcher was still attached and the file still open."""
    log_dir = tmp_path_factory.mktemp("sigmoid")
    seen: list[list[dict]] = []
    torch.manual_seed(0)
    model = zoo.mlp(depth=20, width=32, in_features=64, out_features=10, activation="sigmoid", init="xavier",
                    seed=0)
    w = _train(model, log_dir, on_fix=lambda w: seen.append(_event_lines(log_dir / FILENAME)))
    report = w.report()
    w.detach()
    return log_dir, w, seen, report


def test_each_fix_round_is_one_event_line_flushed_at_once(fixed_run):
    log_dir, w, seen, _ = fixed_run
    assert len(w.fixes) >= 1, "the sigmoid MLP did not trigger autofix"
    # read while the watcher was attached: the round's line was already on disk
    assert [len(lines) for lines in seen] == list(range(1, len(w.fixes) + 1))
    assert seen[0][0]["step"] == w.fixes[0]["step"]
    events = _event_lines(log_dir / FILENAME)
    assert [e["step"] for e in events] == [f["step"] for f in w.fixes]
    first = events[0]
    print(f"event: {first['message']}")
    assert first["kind"] == "autofix" and first["run_id"] == w.run_id
    assert "vanishing-gradient" in first["codes"]
    assert {"relu", "he-init"} <= set(first["remedies"]) and first["modules"]
    assert first["message"].startswith(f"step {first['step']}: ")


def test_an_event_names_the_findings_that_caused_it(fixed_run):
    log_dir, w, _, _ = fixed_run
    for event, fix in zip(_event_lines(log_dir / FILENAME), w.fixes):
        codes = {f["code"] for f in event["findings"]}
        assert codes == set(fix["codes"]) == set(event["codes"])
        assert all(f["severity"] == "error" and f["message"] and isinstance(f["layers"], list)
                   for f in event["findings"])
    vanishing = next(f for f in _event_lines(log_dir / FILENAME)[0]["findings"] if f["code"] == "vanishing-gradient")
    assert vanishing["layers"], vanishing


def test_the_offline_report_has_the_same_events_as_the_live_one(fixed_run):
    log_dir, w, _, live = fixed_run
    offline = build_report(*read_run(log_dir), read_events(log_dir))
    assert json.loads(json.dumps(live.to_dict()["data"]["events"])) == offline.to_dict()["data"]["events"]
    assert [e["step"] for e in offline.data["autofix"]] == [f["step"] for f in w.fixes]
    assert [e["remedies"] for e in offline.data["autofix"]] == [f["remedies"] for f in w.fixes]
    assert live.data["autofix"][0]["step"] == w.fixes[0]["step"]  # the live report keeps its fixes list
    assert "malformed" not in read_run(log_dir)[0]  # event lines are not counted as malformed


def test_the_text_report_lists_the_rounds_in_step_order(fixed_run):
    from rich.console import Console

    from graddoctor.present.console import print_findings

    log_dir, w, _, live = fixed_run
    offline = build_report(*read_run(log_dir), read_events(log_dir))
    for report in (live, offline):
        text = str(report)
        section = text.split("\nAutofix:\n", 1)[1].splitlines()
        assert section[:-1] == [f"  {f['message']}" for f in w.fixes]
        assert re.match(r"  step \d+: .*vanishing-gradient -> relu", section[0])
        # the repaired run judged on its own, after the last round (the findings above cover it all)
        assert section[-1].startswith(f"  after the fix of step {w.fixes[-1]['step']} ("), section[-1]
    assert live.data["after_fix"] == offline.data["after_fix"] and live.data["after_fix"]["steps"] >= 20
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(offline)
    print_findings(console, offline)
    assert console.file.getvalue().count(w.fixes[0]["message"]) == 2


def test_watch_report_command_prints_the_rounds(fixed_run):
    from click.testing import CliRunner

    from graddoctor.cli import main

    log_dir, w, _, _ = fixed_run
    result = CliRunner().invoke(main, ["watch-report", str(log_dir), "--no-layers"])
    flat = " ".join(result.output.split())  # rich wraps long lines at the terminal's width
    # 20 steps after the fix the loss has not yet left the plateau: the findings over the run stay errors
    assert result.exit_code == 1 and "Autofix:" in flat and w.fixes[0]["message"] in flat, result.output
    assert "malformed" not in result.output


def test_html_report_has_the_timeline_and_the_figure_markers(fixed_run, tmp_path):
    from click.testing import CliRunner

    from graddoctor.cli import main
    from graddoctor.present import plots

    log_dir, w, _, live = fixed_run
    result = CliRunner().invoke(main, ["report", str(log_dir), "--out", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text()
    table = page.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-step="(\d+)" data-kind="autofix">', table)
    assert rows == [str(f["step"]) for f in w.fixes]
    assert "<code>vanishing-gradient</code>" in table and "<code>relu</code>" in table
    assert "Autofix timeline" in page and f"after the fix of step {w.fixes[-1]['step']} (" in page
    step = w.fixes[0]["step"]
    loss_ax = plots.loss_curve(live).axes[0]
    assert any(list(line.get_xdata()) == [step, step] for line in loss_ax.lines)
    assert any(t.get_text().startswith(" autofix: relu") for t in loss_ax.texts)
    heat_ax = plots.grad_heatmap(live).axes[0]
    assert any(t.get_text().startswith(" autofix: relu") for t in heat_ax.texts)


def test_a_healthy_run_writes_no_event(tmp_path):
    torch.manual_seed(0)
    model = zoo.mlp(depth=4, width=32, in_features=64, out_features=10, activation="relu", init="he", seed=0)
    w = _train(model, tmp_path)
    report = w.report()
    w.detach()
    assert w.fixes == [] and w.events == []
    assert _event_lines(tmp_path / FILENAME) == [] and read_events(tmp_path) == []
    assert "events" not in report.data and "Autofix" not in str(report)
    page = __import__("graddoctor.present.html", fromlist=["render"]).render(report, figures=False)
    assert 'class="timeline"' not in page


def _old_log(tmp_path, version):
    lines = [{"type": "meta", "version": version, "run_id": "r", "layers": [{"name": "0"}]},
             *({"type": "step", "step": t, "loss": 1.0, "grad_norm": {"0": 0.1}} for t in (1, 2))]
    (tmp_path / FILENAME).write_text("".join(encode(x) + "\n" for x in lines))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_an_old_log_without_events_still_reads(tmp_path, version):
    _old_log(tmp_path, version)
    meta, steps = read_run(tmp_path)
    assert [s["step"] for s in steps] == [1, 2] and "malformed" not in meta
    assert read_events(tmp_path) == []
    report = build_report(meta, steps, read_events(tmp_path))
    assert "events" not in report.data and "autofix" not in report.data


def test_malformed_event_lines_are_skipped_and_counted(tmp_path):
    _old_log(tmp_path, 3)
    with open(tmp_path / FILENAME, "a") as f:
        f.write(encode({"type": "event", "kind": "autofix", "step": "x"}) + "\n")  # no integer step
        f.write(encode({"type": "event", "kind": "autofix", "step": 2, "codes": "vanishing-gradient"}) + "\n")
    meta, _ = read_run(tmp_path)
    assert meta["malformed"] == {"lines": 1, "fields": 1}
    assert [(e["step"], "codes" in e) for e in read_events(tmp_path)] == [(2, False)]


def test_events_reach_tensorboard_and_a_broken_sink_does_not_stop_training(tmp_path):
    class Broken:
        def write_meta(self, meta): pass
        def write_steps(self, steps): pass
        def write_event(self, event): raise OSError("disk full")
        def close(self): pass

    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gd.watch(net, opt, tmp_path, sinks=("jsonl", "tensorboard", Broken())) as w:
        net(torch.randn(8, 4)).sum().backward()
        opt.step()
        w.step()
        with pytest.warns(UserWarning, match="Broken could not write the note event"):
            w.log_event("note", {"message": "step 1: a note"})
    assert read_events(tmp_path)[0]["message"] == "step 1: a note"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("graddoctor/note/text_summary")
    assert [(t.step, t.tensor_proto.string_val[0].decode()) for t in text] == [(1, "step 1: a note")]
    assert w.report().data["events"][0]["kind"] == "note" and "Events:" in str(w.report())


def test_events_reach_the_wandb_summary(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from graddoctor.runlog.sinks.wandb import WandbSink
    from wandb_records import read_offline_run

    for k, v in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(k, v)
    run = wandb.init(project="gd-test", dir=str(tmp_path))
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with gd.watch(net, opt, tmp_path / "gd", sinks=["jsonl", WandbSink(run)]) as w:
        net(torch.randn(8, 4)).sum().backward()
        opt.step()
        w.step()
        w.log_event("autofix", {"message": "step 1: one"})
        w.log_event("autofix", {"message": "step 1: two"})
    run_dir = run.dir
    run.finish()
    _, summary, _ = read_offline_run(tmp_path / "wandb" / run_dir.split("/wandb/")[1].split("/")[0])
    assert summary["graddoctor/events"] == ["step 1: one", "step 1: two"]


def test_after_fix_judges_the_steps_after_the_last_round_that_stayed():
    from graddoctor.diagnose.watching import after_fix

    meta, steps = {"layers": [], "activations": []}, [{"step": t, "loss": 2.0 / t} for t in range(1, 101)]
    undone = [{"step": 10, "remedies": ["relu"]}, {"step": 90, "remedies": ["undo"], "undo": 10}]
    assert after_fix(meta, steps, undone) is None  # the only round was undone: nothing was repaired
    assert after_fix(meta, steps, [{"step": 90, "remedies": ["relu"]}])["findings"] is None  # 10 steps: too few
    told = [{"step": 10, "remedies": ["relu"]}, {"step": 50, "remedies": [], "noop": True}]
    judged = after_fix(meta, steps, told)  # a message is not a round
    assert {k: judged[k] for k in ("from_step", "steps", "findings")} == {"from_step": 10, "steps": 90, "findings": []}
    assert judged["loss_start"] == round(2.0 / 13, 4) and judged["loss_end"] > 2.0 / 100  # where the run went
