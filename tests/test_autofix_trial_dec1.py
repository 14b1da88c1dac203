"""Autofix trial C (new users' setups): bad settings, a foreign optimizer, a frozen model.

- ``check_every=0``, ``warmup="40"``, ``max_fixes=-1``, ``seed=None`` are one ``InputError`` line
  when ``gd.watch`` (or a framework callback) is made; they used to pass and turn autofix off
  with an internal error at its first check (or at the first fix).
- An optimizer that holds none of the model's trainable parameters (another model's) refuses
  module surgery: autofix used to rebuild a deep sigmoid net it could not train and add the new
  ReZero gains to the other model's optimizer.
- A model with no trainable parameters: one warning line at attach, nothing repaired.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import zoo
from graddoctor.errors import InputError
from test_autofix import X, _loop


def _net():
    return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


@pytest.mark.parametrize("setting, value", [("check_every", 0), ("warmup", "40"), ("max_fixes", -1),
                                            ("seed", None), ("trial", 2.5), ("trial", 0),
                                            ("check_every", True)])
def test_a_bad_autofix_setting_is_one_input_error_when_watch_is_made(setting, value):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with pytest.raises(InputError, match=f"^autofix: {setting} must be an integer"):
        gd.watch(net, opt, autofix=True, **{setting: value})


def test_good_autofix_settings_still_pass():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, autofix=True, check_every=5, warmup=0, max_fixes=0, trial=40,
                      seed=torch.tensor(3).item()) as w:
            _loop(net, opt, 12, w)
    assert w.fixes == [] and w.autofix_failed is None


def test_a_bad_autofix_setting_of_a_callback_is_refused_when_the_callback_is_made():
    pytest.importorskip("lightning")
    from graddoctor.integrations.lightning import GradDoctorCallback

    with pytest.raises(InputError, match=r"^GradDoctorCallback \(Lightning\): autofix: check_every must be"):
        GradDoctorCallback(autofix=True, check_every=0)
    GradDoctorCallback(autofix=True, check_every=5)  # a good value passes


def test_another_models_optimizer_refuses_surgery_and_gains_no_parameters():
    model = zoo.mlp(depth=10, width=32, in_features=64, out_features=10, activation="sigmoid", seed=0)
    other = nn.Linear(3, 3)
    opt = torch.optim.SGD(other.parameters(), lr=0.1)
    kinds = [type(m) for m in model.modules()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(model, opt, autofix=True, example_inputs=X[:32]) as w:
            _loop(model, opt, 50, w)
    assert w.refused is not None and "none of whose trainable parameters are in the optimizer" in w.refused
    assert [type(m) for m in model.modules()] == kinds  # no activation swap, no ReZero wrapper
    assert [id(p) for g in opt.param_groups for p in g["params"]] == [id(p) for p in other.parameters()]
    assert any("no module surgery" in str(c.message) for c in caught)


def test_a_model_with_no_trainable_parameters_gets_one_line_and_no_repair():
    model = zoo.mlp(depth=10, width=32, in_features=64, out_features=10, activation="sigmoid", seed=0)
    model.requires_grad_(False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(model, opt, autofix=True, example_inputs=X[:32]) as w:
            for _ in range(20):
                model(X[:32])
                opt.step()
                w.step(torch.tensor(2.3))
    lines = [str(c.message) for c in caught if "graddoctor.autofix" in str(c.message)]
    assert len(lines) == 1 and "no trainable parameters" in lines[0]
    assert w.fixes == []
    frozen = [str(c.message) for c in caught if "every parameter of the model is frozen" in str(c.message)]
    assert len(frozen) == 1  # watch's own line: nothing will be recorded


class _FunctionalBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x):
        return torch.sigmoid(self.fc(x))


class _FunctionalNet(nn.Module):
    """Hidden sigmoids called in ``forward`` (no module to swap): the swap is a code change."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.out = nn.Linear(64, 64), nn.Linear(64, 10)
        self.blocks = nn.ModuleList([_FunctionalBlock(64) for _ in range(12)])

    def forward(self, x):
        x = torch.sigmoid(self.inp(x))
        for b in self.blocks:
            x = b(x)
        return self.out(x)


def test_a_round_names_the_code_changes_it_could_not_make():
    """Before: the rounds said "he-init on 14 modules" and nothing else; the ReLU swap that
    gd.repair lists as manual was silently dropped."""
    torch.manual_seed(0)
    net = _FunctionalNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, example_inputs=X[:32], autofix=True) as w:
            _loop(net, opt, 12, w)
    first = w.fixes[0]
    assert any("replace the sigmoid call by F.relu" in m for m in first["manual"])
    assert "needs a code change" in first["message"] and "more: the event's 'manual'" in first["message"]
