"""Every CLI path: bad input is exit 2 and one line on stderr, output paths are checked before
any work, and layer names that look like mathtext ($...$) do not break the figures."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
from click.testing import CliRunner
from torch import nn

from graddoctor.cli import main
from graddoctor.present.figure_common import to_png
from graddoctor.present.run_figures import grad_heatmap, gradient_flow, update_ratio
from runfixtures import record_run


def _run(args: list[str]):
    return CliRunner().invoke(main, args)


def _one_line_exit_2(result, match: str) -> None:
    """Exit 2, no traceback, one error line (click's own usage errors add its usage hint)."""
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.strip() and not x.startswith(("Usage:", "Try "))]
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in result.output, result.output


@pytest.fixture
def blocker(tmp_path):
    """A file where a folder would have to be (fails for root too, unlike permissions)."""
    f = tmp_path / "a_file"
    f.write_text("x")
    return f


def test_report_out_into_an_unwritable_place(tmp_path, blocker):
    meta, steps = record_run(n_steps=4)
    (tmp_path / "watch.jsonl").write_text("\n".join(json.dumps(x) for x in [meta, *steps]) + "\n")
    _one_line_exit_2(_run(["report", str(tmp_path), "--out", str(blocker / "r.html")]), "is a file, not a directory")
    _one_line_exit_2(_run(["report", str(tmp_path), "--out", str(tmp_path)]), "is a directory")


def test_fix_and_demo_out_are_checked_before_any_work(blocker):
    _one_line_exit_2(_run(["fix", "graddoctor.zoo:mlp", "--input-shape", "4,64", "--out", str(blocker / "d")]),
                     "cannot be created")
    _one_line_exit_2(_run(["fix", "graddoctor.zoo:mlp", "--input-shape", "4,64", "--out", str(blocker)]),
                     "is a file")
    _one_line_exit_2(_run(["demo", "--steps", "1", "--out", str(blocker / "demo")]), "cannot be created")


def test_check_input_shape_too_large_to_allocate():
    _one_line_exit_2(_run(["check", "graddoctor.zoo:mlp", "--input-shape", "100000,100000,100"]),
                     "GiB")


def test_check_help_says_the_factory_file_is_run():
    out = _run(["check", "--help"]).output
    assert "imported and the function" in " ".join(out.split()) and "trust" in out


def test_layer_names_with_dollars_render():
    model = nn.Sequential(OrderedDict([("$a_1$", nn.Linear(8, 8)), ("act", nn.Sigmoid()),
                                       ("$\\frac{", nn.Linear(8, 8)), ("act2", nn.Tanh()), ("b$", nn.Linear(8, 3))]))
    run = record_run(model, n_steps=6)
    for fig in (gradient_flow(run), grad_heatmap(run), update_ratio(run)):
        assert to_png(fig)[:4] == b"\x89PNG"
