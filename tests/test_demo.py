"""``graddoctor demo``: the broken model stays at chance, the repaired one learns, the report is written."""

from __future__ import annotations

import io
import json
import math

import pytest
from click.testing import CliRunner
from rich.console import Console

from graddoctor import demo as demo_mod
from graddoctor.cli import main
from graddoctor.cli.demo import ConsoleView
from graddoctor.cli.report import load_sections


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120, force_terminal=False, color_system=None), buf


def test_parse_model():
    assert demo_mod.parse_model("mlp:depth=3,init=0.5,norm=none,residual=None") == (
        "mlp", {"depth": 3, "init": 0.5, "norm": "none", "residual": None})
    assert demo_mod.parse_model("lstm") == ("lstm", {})
    with pytest.raises(demo_mod.InputError, match="key=value"):
        demo_mod.parse_model("mlp:depth")


def test_grad_profile_and_ratio_skip_missing_and_nonfinite():
    meta = {"layers": [{"name": "a"}, {"name": "frozen"}, {"name": "b"}]}
    steps = [{"grad_norm": {"a": v, "frozen": None, "b": 1.0}} for v in (1e-3, float("nan"), 3e-3, 2e-3)]
    profile = demo_mod.grad_profile(meta, steps, last=0.75)
    assert profile == [("a", 2.5e-3), ("b", 1.0)]  # median of 3e-3, 2e-3; nan and null left out
    assert demo_mod.first_last_ratio(profile) == pytest.approx(2.5e-3)
    assert math.isnan(demo_mod.first_last_ratio(profile[:1]))


@pytest.mark.slow
def test_demo_acceptance(tmp_path):
    """The README's demo, default settings: broken near chance, repaired >= 90 %, report written."""
    console, buf = _console()
    res = demo_mod.run_demo(out=tmp_path, view=ConsoleView(console))
    text = buf.getvalue()
    assert res["broken"]["test_accuracy"] < 0.2  # 10 classes: chance is 0.1
    assert res["repaired"]["test_accuracy"] >= 0.9
    assert res["broken"]["grad_ratio_first_last"] < 1e-6 < res["repaired"]["grad_ratio_first_last"]
    assert {"vanishing-gradient", "saturating-hidden-activation"} <= set(res["broken"]["check_codes"])
    assert "vanishing-gradient" in res["broken"]["watch_codes"]
    assert "vanishing-gradient" not in res["repaired"]["watch_codes"]
    # shown in the terminal
    assert f"test accuracy {100 * res['broken']['test_accuracy']:.1f}%" in text
    assert f"test accuracy {100 * res['repaired']['test_accuracy']:.1f}% >= 90%" in text
    assert "[applied] relu" in text  # the repair's own words, not eaten as rich markup
    for heading in ("1. check", "2. train under watch", "3. repair", "4. retrain", "5. before / after",
                    "gradient norm by layer", "gradient ratio first/last layer"):
        assert heading in text
    page = (tmp_path / "report.html").read_text()
    assert res["report"] == str(tmp_path / "report.html") and str(tmp_path / "report.html") in text
    assert 'data-code="vanishing-gradient"' in page and page.count("<figure") >= 10
    assert json.loads((tmp_path / "summary.json").read_text())["repaired"]["test_accuracy"] >= 0.9
    # everything `graddoctor report OUT` needs to rebuild the page is left in OUT
    assert list(load_sections(tmp_path)) == ["check: check-broken-model", "check: check-repaired-model",
                                             "watch: broken", "watch: repaired", "repair"]


def test_demo_needs_every_part_of_graddoctor(monkeypatch):
    """No "not installed" fallback: a part that cannot be imported fails the demo's import."""
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "graddoctor.fix.repairing", None)  # import -> ImportError
    monkeypatch.delitem(sys.modules, "graddoctor.demo")
    with pytest.raises(ImportError, match="graddoctor.fix.repairing"):
        importlib.import_module("graddoctor.demo")


@pytest.mark.slow
def test_demo_runs_every_part_and_hides_no_failure(tmp_path, monkeypatch):
    res = demo_mod.run_demo(steps=20, out=tmp_path / "ok")  # the base view shows nothing
    assert {"check_codes", "watch_codes", "test_accuracy"} <= set(res["broken"]) & set(res["repaired"])
    assert "missing" not in res and (tmp_path / "ok" / "report.html").is_file()

    def failing_repair(*args, **kwargs):
        raise RuntimeError("repair failed")

    monkeypatch.setattr(demo_mod, "repair", failing_repair)
    with pytest.raises(RuntimeError, match="repair failed"):  # not skipped, not replaced by a message
        demo_mod.run_demo(steps=20, out=tmp_path / "failed")
    assert not (tmp_path / "failed" / "summary.json").exists()


def test_cli_options_and_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--help"])
    assert result.exit_code == 0 and "--model" in result.output and "--steps" in result.output
    result = runner.invoke(main, ["demo", "--model", "mlp:depth", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "key=value" in result.output
    result = runner.invoke(main, ["demo", "--model", "nosuch", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "unknown model 'nosuch'; known models:" in result.output
    result = runner.invoke(main, ["demo", "--dataset", "adding", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "classifier" in result.output


@pytest.mark.parametrize("model", ["gru", "transformer"])
def test_sequence_models_of_the_zoo_read_the_digits_as_rows(tmp_path, model):
    # every name in the demo's "known models" runs: recurrent nets and Transformers get the 64
    # pixels as 8 rows of 8 (they failed with "the model's forward failed" on flat inputs)
    res = demo_mod.run_demo(model=model, steps=20, out=tmp_path)
    assert res["broken"]["test_accuracy"] is not None and (tmp_path / "report.html").is_file()
