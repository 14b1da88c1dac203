"""New-user trial (Dec 2): every bad CLI input is one line that names the fix - an ``--out`` the
nearest-parent check passed but cannot be written (/proc: a traceback before), a checkpoint given
as the factory, a factory that needs arguments, float32 inputs into float64 weights, a dict
spread into keyword arguments or a tensor given to a forward that takes a dict; and a fresh
model with lazy layers is materialised on the given input (``check`` refused it)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from graddoctor.cli import main

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc = nn.Linear(16, width)

        def forward(self, x):
            return self.fc(x)


    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 4)

        def forward(self, batch):
            return self.fc(batch["x"])


    def dict_spread():
        return DictNet(), {"x": torch.randn(4, 16)}


    def dict_model():
        return DictNet()


    def double():
        return nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2)).double()


    def lazy():
        return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.LazyLinear(4))


    def deep_sigmoid():
        return nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 2))
''')


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    path = tmp_path / "mymodels.py"
    path.write_text(MODELS)
    return path


def _one_line(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, (res.output, res.exception)
    return lines[0]


@pytest.mark.skipif(not os.path.isdir("/proc") or os.access("/proc/self", os.F_OK) is False, reason="needs /proc")
def test_fix_out_that_cannot_be_written_is_one_line(models: Path) -> None:
    line = _one_line(["fix", f"{models}:deep_sigmoid", "--input-shape", "8,16", "--out", "/proc/nope"])
    assert "--out '/proc/nope' cannot be written" in line


def test_a_checkpoint_given_as_the_factory_says_how_to_load_it(tmp_path: Path) -> None:
    line = _one_line(["check", str(tmp_path / "model.pt"), "--input-shape", "8,16"])
    assert "is a checkpoint, not a factory" in line and "torch.load(" in line


def test_a_factory_that_needs_arguments_asks_for_a_zero_argument_one(models: Path) -> None:
    line = _one_line(["check", f"{models}:Net", "--input-shape", "8,16"])
    assert "missing 1 required positional argument" in line and "zero-argument factory" in line


def test_float32_inputs_into_float64_weights_name_the_dtype_option(models: Path) -> None:
    assert "--dtype float64" in _one_line(["check", f"{models}:double", "--input-shape", "8,16"])
    res = CliRunner().invoke(main, ["check", f"{models}:double", "--input-shape", "8,16", "--dtype", "float64"])
    assert res.exit_code in (0, 1) and "error:" not in res.output, res.output


def test_a_forward_that_takes_a_dict_is_told_to_wrap_it_in_a_tuple(models: Path) -> None:
    assert "(model, (inputs,))" in _one_line(["check", f"{models}:dict_spread"])
    assert "takes a dict" in _one_line(["check", f"{models}:dict_model", "--input-shape", "4,16"])


def test_lazy_layers_of_a_fresh_model_are_materialised_on_the_input(models: Path) -> None:
    res = CliRunner().invoke(main, ["check", f"{models}:lazy", "--input-shape", "8,16"])
    assert res.exit_code == 0 and "lazy" not in res.output, res.output
