"""New-user trial (Dec 1): ``lr-find`` on a model that does not take the dataset's inputs, its
wording of the sweep length, and a run log cut short in its first (meta) line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import graddoctor as gd
from graddoctor.cli import main
from graddoctor.cli.lr_find import held_warnings
from graddoctor.errors import InputError
from graddoctor.runlog import read_run

ROOT = Path(__file__).resolve().parents[1]

MODELS = textwrap.dedent('''
    import torch
    from torch import nn


    class Shift(nn.Module):
        """A frozen linear map and one trainable logit shift: the loss cannot move."""

        def __init__(self):
            super().__init__()
            self.body = nn.Linear(40, 10).requires_grad_(False)
            self.shift = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return self.body(x) + self.shift


    def flat():
        torch.manual_seed(0)
        return Shift()


    def lazy():
        return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.LazyLinear(10))


    def wrong_channels():
        return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(144, 10))
''')


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "trial_models.py"
    path.write_text(MODELS)
    return path


def _error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


# --- 1. lr-find: one error line, naming the shapes; the CLI's own option names -------------------

def test_lr_find_on_the_wrong_dataset_is_one_line_naming_both_widths(tmp_path: Path) -> None:
    # a real process: pytest's own warning capture would hide the stray UserWarning from CliRunner
    cmd = [sys.executable, "-m", "graddoctor", "lr-find", f"{ROOT}/examples/models.py:relu_he_mlp",
           "--dataset", "mnist1d", "--steps", "20", "--out", str(tmp_path / "lr.png")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    lines = _error_lines(res.stderr)
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("graddoctor: error:"), res.stderr
    assert "UserWarning" not in res.stderr and "ModelMap failed" not in res.stderr
    assert "--dataset mnist1d gives 40 input features" in lines[0] and "takes 64" in lines[0]
    assert "use --dataset digits" in lines[0]


def test_lr_find_first_layer_not_linear_still_names_the_dataset_shape(models: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["lr-find", f"{models}:wrong_channels", "--steps", "20",
                                    "--out", str(tmp_path / "lr.png")])
    lines = _error_lines(res.output)
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "gives batches of shape (64, 64)" in lines[0] and "RuntimeError" in lines[0]


def test_lr_find_a_lazy_model_is_materialised_not_a_traceback(models: Path, tmp_path: Path) -> None:
    """(Dec 1: one line naming the lazy layer; Dec 2: the CLI materialises a factory's fresh lazy
    layers on the dataset's input, so the sweep runs.)"""
    res = CliRunner().invoke(main, ["lr-find", f"{models}:lazy", "--steps", "20",
                                    "--out", str(tmp_path / "lr.png")])
    assert res.exit_code == 0 and "error:" not in res.output and "Traceback" not in res.output, res.output


def test_lr_find_cli_tells_the_user_to_raise_steps_not_num_steps(models: Path, tmp_path: Path) -> None:
    # large batches: the curve's noise (<= 0.5 %) stays under lr-insensitive's 2 % threshold
    res = CliRunner().invoke(main, ["lr-find", f"{models}:flat", "--dataset", "mnist1d", "--steps", "40",
                                    "--batch-size", "1000", "--out", str(tmp_path / "lr.png")])
    assert res.exit_code == 0, res.output
    assert "lr-insensitive" in res.output and "raise --steps" in res.output, res.output
    assert "num_steps" not in res.output


def test_held_warnings_are_shown_after_success_and_dropped_before_an_error() -> None:
    with pytest.warns(UserWarning, match="kept"), held_warnings():
        warnings.warn("kept", UserWarning, stacklevel=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(InputError), held_warnings():
            warnings.warn("noise before the error line", UserWarning, stacklevel=1)
            raise InputError("the error line")
    assert not seen


# --- 2. a run log whose first (meta) line was cut short ----------------------------------------------

def _log(tmp_path: Path) -> str:
    net = nn.Sequential(*[nn.Linear(16, 16) for _ in range(4)])
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with gd.watch(net, opt, log_dir=tmp_path / "src") as w:
        for _ in range(3):
            loss = net(torch.randn(8, 16)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return (tmp_path / "src" / "watch.jsonl").read_text()


@pytest.mark.parametrize("keep_steps", [False, True])
def test_a_meta_line_cut_short_is_named_as_truncated(tmp_path: Path, keep_steps: bool) -> None:
    text = _log(tmp_path)
    meta, rest = text.split("\n", 1)
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "watch.jsonl").write_text(meta[: len(meta) // 2] + ("\n" + rest if keep_steps else ""))
    res = CliRunner().invoke(main, ["watch-report", str(cut)])
    lines = _error_lines(res.output)
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert "first line (the run's meta record) is truncated or corrupt" in lines[0]
    assert str(cut / "watch.jsonl") in lines[0] and "was the run started" not in lines[0]
    with pytest.raises(InputError, match="truncated or corrupt"):
        read_run(cut)


def test_an_empty_log_still_says_it_holds_no_records(tmp_path: Path) -> None:
    (tmp_path / "watch.jsonl").write_text("")
    with pytest.raises(InputError, match="holds no watch records"):
        read_run(tmp_path)
