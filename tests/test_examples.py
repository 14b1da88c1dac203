"""The README's examples stay true: factories in examples/models.py and the README quick start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from graddoctor.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("factory", "args", "code"), [
    ("sigmoid_mlp", ["--input-shape", "16,64"], 1),
    ("relu_he_mlp", ["--input-shape", "16,64"], 0),
    ("vanilla_rnn", [], 1),
])
def test_example_factories_through_the_cli(factory: str, args: list[str], code: int):
    res = CliRunner().invoke(main, ["check", f"{ROOT / 'examples' / 'models.py'}:{factory}", *args])
    assert res.exit_code == code, res.output


@pytest.mark.slow
def test_readme_quick_start_runs(tmp_path, monkeypatch):
    code = re.search(r"## Quick start\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code.group(1), "README quick start", "exec"), scope)
    assert "vanishing-gradient" in scope["report"].codes
    assert scope["w"].report().ok
    assert (tmp_path / "runs" / "exp1" / "watch.jsonl").exists()
