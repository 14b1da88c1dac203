"""The W&B sink in offline mode: the run's history holds the per-layer series (under the stable
key layout, against graddoctor/step) and the activation histograms; findings reach the summary
and the alerts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd

wandb = pytest.importorskip("wandb")

from graddoctor.runlog.sinks.wandb import WandbSink  # noqa: E402
from wandb_records import read_offline_run  # noqa: E402


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path


def saturated_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 1))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                m.weight.mul_(40.0)  # pre-activations far in the sigmoid's tails
    return net


def train(net, steps, w_kwargs, log_dir):
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    with gd.watch(net, opt, log_dir=log_dir, flush_every=5, activation_every=2, **w_kwargs) as w:
        for _ in range(steps):
            x = torch.randn(32, 8, generator=g)
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
        report = w.report()
    return w, report


def test_wandb_history_has_per_layer_series_histograms_and_findings(offline):
    run = wandb.init(project="gd-test", dir=str(offline))
    net = saturated_net()
    w, report = train(net, 12, {"sinks": ["jsonl", WandbSink(run)]}, offline / "gd")
    run_dir = run.dir
    run.finish()
    history, summary, alerts = read_offline_run(offline / "wandb" / run_dir.split("/wandb/")[1].split("/")[0])
    rows = [h for h in history if "graddoctor/step" in h]
    assert [h["graddoctor/step"] for h in rows] == list(range(1, 13))
    meta, steps = w.records()
    for layer in ("0", "2", "4"):
        series = [h[f"graddoctor/grad_norm/{layer}"] for h in rows]
        assert series == pytest.approx([s["grad_norm"][layer] for s in steps], rel=1e-6)
    hist_rows = [h for h in rows if "graddoctor/act_hist/1/_type" in h]
    assert hist_rows and all(h["graddoctor/act_hist/1/_type"] == "histogram" for h in hist_rows)
    assert "saturated-activation" in report.codes
    assert "saturated-activation" in summary["graddoctor/findings"]
    assert any(t == "graddoctor: saturated-activation" for t, _ in alerts)


def test_wandb_sink_by_name_uses_the_active_run(offline):
    run = wandb.init(project="gd-test", dir=str(offline))
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    train(net, 3, {"sinks": ["wandb"]}, offline / "gd")
    run_dir = run.dir
    run.finish()
    history, summary, _ = read_offline_run(offline / "wandb" / run_dir.split("/wandb/")[1].split("/")[0])
    assert [h["graddoctor/step"] for h in history if "graddoctor/step" in h] == [1, 2, 3]
    assert summary["graddoctor/findings"] == []


def test_unknown_sink_names_wandb():
    from graddoctor.errors import InputError
    from graddoctor.runlog.sinks import make_sink

    with pytest.raises(InputError, match="'wandb'"):
        make_sink("mlflow", "/tmp")


def test_the_users_own_explicit_steps_are_never_dropped(offline):
    # the user logs wandb.log({...}, step=i) every step: graddoctor's flushes must not move the
    # run's step past i (W&B drops a point logged to a step below the current one)
    run = wandb.init(project="gd-test", dir=str(offline))
    net = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with gd.watch(net, opt, log_dir=offline / "gd", flush_every=5, sinks=["wandb"]) as w:
        for i in range(20):
            loss = net(torch.randn(4, 8)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
            run.log({"my_loss": loss.item()}, step=i)
    run_dir = run.dir
    run.finish()
    history, _, _ = read_offline_run(offline / "wandb" / run_dir.split("/wandb/")[1].split("/")[0])
    assert len([h for h in history if "my_loss" in h]) == 20  # every point of the user's kept
    ours = [h["graddoctor/step"] for h in history if "graddoctor/step" in h]
    assert ours and ours == sorted(ours) and ours[-1] == 20, ours  # the flushes' last records
