"""Trial (December, second round): ``graddoctor fix`` never leaves a corrupt ``model.pt``;
``gd.repair`` checks its arguments up front (one-line ``InputError``); ``graddoctor demo``
creates no folder for arguments it refuses."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import graddoctor as gd
from graddoctor.cli import main
from graddoctor.errors import InputError

# a class defined inside the factory: it never pickles, so model.pt cannot be written
LOCAL_CLASS = '''
import torch
from torch import nn

def local_class():
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.ModuleList([nn.Linear(8, 8) for _ in range(6)])
            self.out = nn.Linear(8, 2)

        def forward(self, x):
            for layer in self.fc:
                x = torch.sigmoid(layer(x))
            return self.out(x)

    torch.manual_seed(0)
    return Local(), torch.randn(4, 8)
'''


def _fix_local_class(tmp_path, out):
    path = tmp_path / "models.py"
    path.write_text(LOCAL_CLASS)
    return CliRunner().invoke(main, ["fix", f"{path}:local_class", "--out", str(out)])


def test_fix_leaves_no_partial_model_pt_and_says_why(tmp_path):
    out = tmp_path / "fixed"
    res = _fix_local_class(tmp_path, out)
    assert res.exit_code in (0, 1), res.output
    assert sorted(p.name for p in out.iterdir()) == ["changes.json", "state_dict.pt"]  # no temp file either
    saved = [line for line in res.output.splitlines() if line.startswith("saved:")]
    assert len(saved) == 1 and "model.pt" not in saved[0]
    why = [line for line in res.output.splitlines() if "model.pt" in line and "not" in line]
    assert len(why) == 1 and "state_dict.pt" in why[0], res.output


def test_fix_keeps_an_earlier_model_pt_intact(tmp_path):
    out = tmp_path / "fixed"
    out.mkdir()
    torch.save(nn.Linear(2, 2), out / "model.pt")
    res = _fix_local_class(tmp_path, out)
    assert res.exit_code in (0, 1), res.output
    assert isinstance(torch.load(out / "model.pt", weights_only=False), nn.Linear)
    assert sorted(p.name for p in out.iterdir()) == ["changes.json", "model.pt", "state_dict.pt"]


X = torch.randn(8, 6)


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Sigmoid(), nn.Linear(6, 2))


LOADER = [(X, torch.randint(0, 2, (8,)))] * 2


@pytest.mark.parametrize("kwargs, names", [
    ({"optimizer": "adam"}, ["optimizer", "'adam'"]),
    ({"lr_find_options": "x", "keep_architecture": True, "train_loader": LOADER}, ["lr_find_options", "'x'"]),
    ({"lr_find_options": {"bogus": 1}, "keep_architecture": True, "train_loader": LOADER},
     ["lr_find_options", "'bogus'", "num_steps"]),
    ({"example_inputs": "abc"}, ["example_inputs", "'abc'"]),
    ({"seed": "0"}, ["seed", "'0'"]),
    ({"seed": 1.5}, ["seed", "1.5"]),
    ({"seed": -1}, ["seed", "-1"]),
    ({"seed": True}, ["seed", "True"]),
    ({"train_loader": 5, "tune_lr": True}, ["train_loader", "int"]),
    ({"train_loader": "batches", "tune_lr": True}, ["train_loader", "str"]),
    ({"remedies": 3}, ["remedies", "int"]),
    ({"remedies": ["relu", 3]}, ["remedies", "int"]),
    ({"keep_architecture": "no"}, ["keep_architecture", "'no'"]),
    ({"inplace": "yes"}, ["inplace", "'yes'"]),
    ({"tune_lr": "yes"}, ["tune_lr", "'yes'"]),
    ({"loss_fn": "mse", "train_loader": LOADER, "tune_lr": True}, ["loss_fn", "'mse'"]),
])
def test_repair_refuses_bad_arguments_up_front_in_one_line(kwargs, names, monkeypatch):
    import graddoctor.fix.repairing as repairing

    def no_work(*a, **k):
        raise AssertionError("repair started work before checking its arguments")

    monkeypatch.setattr(repairing, "_repair", no_work)
    net = _net()
    report = gd.check(net, X)
    with pytest.raises(InputError) as err:
        gd.repair(net, report, **{"example_inputs": X, **kwargs})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("gd.repair"), msg
    assert all(n in msg for n in names), msg


def test_repair_takes_one_remedy_as_a_string():
    res = gd.repair(_net(), None, example_inputs=X, remedies="relu")
    assert [c.remedy for c in res.changes] == ["relu"]
    res = gd.repair(_net(), None, example_inputs=X, remedies="relu, he-init")
    assert [c.remedy for c in res.changes] == ["relu", "he-init"]


def test_repair_unknown_remedy_string_is_named_whole():
    with pytest.raises(InputError, match="'relux'"):
        gd.repair(_net(), None, example_inputs=X, remedies="relux")


def test_repair_still_takes_good_arguments():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    res = gd.repair(net, gd.check(net, X), X, opt, False, ("relu", "he-init", "lr-find"), 3, keep_architecture=False,
                    train_loader=LOADER, tune_lr=True, loss_fn=nn.functional.cross_entropy,
                    lr_find_options={"num_steps": 10, "start_lr": 1e-4})
    assert [c.remedy for c in res.applied] == ["relu", "he-init", "lr-find"]
    assert res.optimizer is not None and res.optimizer.param_groups[0]["lr"] == res.lr


@pytest.mark.parametrize("args", [["--model", "bogus:depth=3"], ["--model", "mlp:depth"],
                                  ["--dataset", "nosuch"], ["--dataset", "adding"]])
def test_demo_refusing_its_arguments_creates_no_folder(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["demo", *args])
    assert res.exit_code == 2, res.output
    res = CliRunner().invoke(main, ["demo", *args, "--out", str(tmp_path / "new" / "deeper")])
    assert res.exit_code == 2, res.output
    assert list(tmp_path.iterdir()) == []


def test_a_re_drawn_decoder_names_the_embedding_tied_to_it():
    class TiedLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(50, 32)
            self.body = nn.Sequential(nn.Linear(32, 32), nn.Tanh())
            self.dec = nn.Linear(32, 50, bias=False)
            self.dec.weight = self.emb.weight

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.dec(self.body(self.emb(t))).mean(1)

    torch.manual_seed(0)
    result = gd.repair(TiedLM(), None, remedies=["xavier-init"], example_inputs=torch.randint(0, 50, (4, 8)))
    [change] = result.changes
    assert change.details["tied"] == {"emb": "dec"} and "emb (shares dec's weight)" in change.why
