"""``graddoctor check``: exit codes (0 clean, 1 error findings, 2 bad input), JSON, the factory loader."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from graddoctor.cli import main
from graddoctor.cli.factory import build, make_inputs, parse_shape
from graddoctor.errors import InputError

MODELS = textwrap.dedent('''
    import torch
    from torch import nn

    def sigmoid_mlp():
        layers = []
        for _ in range(19):
            layers += [nn.Linear(32, 32), nn.Sigmoid()]
        return nn.Sequential(*layers, nn.Linear(32, 4))

    def healthy():
        net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
        return net, torch.randn(8, 32)

    def embed():
        return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 50))

    def rnn():
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.rnn = nn.RNN(2, 8, batch_first=True)
                self.head = nn.Linear(8, 1)

            def forward(self, x):
                return self.head(self.rnn(x)[0][:, -1])

        return Net()

    def boom():
        raise RuntimeError("cannot build\\nsecond line")

    def not_a_model():
        return 42

    def no_parameters():
        return nn.Sequential(nn.ReLU(), nn.Flatten())
''')


@pytest.fixture()
def models(tmp_path: Path) -> Path:
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, ["check", *args])


def test_error_findings_exit_1_and_clean_exit_0(models: Path):
    bad = invoke(f"{models}:sigmoid_mlp", "--input-shape", "8,32")
    assert bad.exit_code == 1, bad.output
    assert "vanishing-gradient" in bad.output and "PROBLEMS" in bad.output
    ok = invoke(f"{models}:healthy")  # the factory gives (model, inputs)
    assert ok.exit_code == 0, ok.output


def test_json_output(models: Path):
    res = invoke(f"{models}:sigmoid_mlp", "--input-shape", "8,32", "--json")
    d = json.loads(res.output)
    assert res.exit_code == 1 and d["source"] == "check" and not d["ok"]
    assert "vanishing-gradient" in d["codes"] and len(d["data"]["probe"]["layers"]) == 20


def test_module_factory_with_seq_and_long_dtype(models: Path):
    res = invoke(f"{models}:rnn", "--input-shape", "2,2", "--seq", "210", "--json")
    d = json.loads(res.output)
    assert res.exit_code == 1  # vanishing through time is an error
    assert "long-sequence-rnn" in d["codes"] and len(d["data"]["probe"]["time_grad"]) == 210
    res = invoke("graddoctor.zoo:mlp", "--input-shape", "4,64", "--no-probe", "--json")
    assert res.exit_code == 0 and "probe" not in json.loads(res.output)["data"]
    res = invoke(f"{models}:embed", "--input-shape", "4", "--seq", "12", "--dtype", "long", "--json")
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.output)["data"]["probe"]["time_grad"]) == 12


@pytest.mark.parametrize("args,needle", [
    (["{dir}/missing.py:f", "--input-shape", "2,3"], "no such file"),
    (["{dir}:f", "--input-shape", "2,3"], "is a folder, not a Python file"),
    (["{models}:nope", "--input-shape", "2,3"], "has no callable 'nope'"),
    (["{models}:boom"], "raised RuntimeError: cannot build"),
    (["{models}:sigmoid_mlp", "--input-shape", "8,3"], "forward failed"),
    (["{models}:sigmoid_mlp"], "give --input-shape"),
    (["{models}:sigmoid_mlp", "--input-shape", "8,a"], "--input-shape must be"),
    (["{models}:sigmoid_mlp", "--input-shape", "8,32", "--dtype", "complex"], "unknown --dtype"),
    (["{models}:not_a_model", "--input-shape", "8,32"], "must return an nn.Module"),
    (["no_such_package.mod:f"], "cannot import module"),
    (["just_a_name"], "expected FILE.py:FACTORY"),
    (["{models}:healthy", "--seq", "5"], "returned its own inputs"),
    (["{models}:no_parameters", "--input-shape", "8,32"], "has no parameters, so there is nothing to check"),
])
def test_bad_input_is_one_line_and_exit_2(models: Path, args: list[str], needle: str):
    args = [a.format(models=models, dir=models.parent) for a in args]
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("graddoctor: error:"), res.output
    assert needle in lines[0]


def test_real_process_exit_codes(models: Path):
    cmd = [sys.executable, "-m", "graddoctor", "check"]
    bad = subprocess.run([*cmd, f"{models}:boom"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("graddoctor: error: the factory")


def test_factory_imports_its_neighbours_when_called(tmp_path: Path):
    # a factory that imports a module next to its file inside its body (new-user trial 13)
    (tmp_path / "h_seq.py").write_text(textwrap.dedent('''
        from torch import nn

        def rnn_lm():
            return nn.Sequential(nn.Embedding(50, 16), nn.Linear(16, 50))
    '''))
    (tmp_path / "cli_factories.py").write_text(textwrap.dedent('''
        import torch

        def lstm_lm():
            import h_seq
            return h_seq.rnn_lm(), torch.randint(0, 50, (4, 32))
    '''))
    before = list(sys.path)
    res = invoke(f"{tmp_path / 'cli_factories.py'}:lstm_lm", "--no-probe")
    assert res.exit_code == 0, res.output
    assert sys.path == before  # the folder is taken off sys.path again
    sys.modules.pop("h_seq", None)


def test_factory_helpers():
    assert parse_shape("8,3,32,32") == (8, 3, 32, 32) and parse_shape("8x64") == (8, 64)
    for typo in ("0,3", "x,64", "2,,64", "2,64,x", "2,x", ""):  # no part silently dropped
        with pytest.raises(InputError):
            parse_shape(typo)
    x = make_inputs(None, (2, 3), "float64", seq=5)
    assert x.shape == (2, 5, 3) and x.dtype == torch.float64
    assert torch.equal(x, make_inputs(None, (2, 3), "float64", seq=5))  # seeded
    ids = make_inputs(torch.nn.Embedding(7, 2), (3, 4), "long")
    assert ids.dtype == torch.long and int(ids.max()) < 7
    model, inputs = build("graddoctor.zoo:mlp", "4,64")
    assert inputs.shape == (4, 64) and model(inputs).shape == (4, 10)


def test_map_depth_must_be_positive():
    assert invoke_map("--depth", "0").exit_code == 2
    res = invoke_map("--depth", "2")
    assert res.exit_code == 0 and "Linear" in res.output


def invoke_map(*args: str):
    return CliRunner().invoke(main, ["map", *args])
