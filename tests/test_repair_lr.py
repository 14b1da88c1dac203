"""repair's opt-in LR range test (issue 16): where findings call for ``lr-find``, run it on the
repaired model and set the optimizer's learning rate; leave everything alone otherwise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.report import Finding, Report


def _batches(n: int = 128, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return [(x[i:i + size], y[i:i + size]) for i in range(0, n, size)]


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


PLATEAU = Report([Finding("loss-plateau", "warning", "flat", remedies=["lr-find"])])


def test_no_finding_calls_for_lr_find_nothing_is_run_or_set() -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.123)
    res = gd.repair(net, Report([]), optimizer=opt, train_loader=_batches(), tune_lr=True)
    assert res.lr is None and res.optimizer is None and res.lr_find is None
    assert opt.param_groups[0]["lr"] == 0.123


def test_a_plateau_sets_the_suggestion_on_the_users_optimizer_when_it_holds_the_model() -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.123, momentum=0.9)
    res = gd.repair(net, PLATEAU, optimizer=opt, inplace=True, train_loader=_batches(), tune_lr=True,
                    lr_find_options={"start_lr": 1e-4, "num_steps": 60})
    assert res.lr_find is not None and res.lr == res.lr_find.suggestion and res.lr is not None
    assert res.optimizer is opt and opt.param_groups[0]["lr"] == res.lr
    assert [c.kind for c in res.changes if c.remedy == "lr-find"] == ["applied"]
    assert "LR range test" in str(res)


def test_a_copy_gets_a_new_optimizer_of_the_same_type_over_its_own_parameters() -> None:
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.123, momentum=0.9)
    res = gd.repair(net, PLATEAU, optimizer=opt, train_loader=_batches(), tune_lr=True,
                    lr_find_options={"start_lr": 1e-4, "num_steps": 60})
    new = res.optimizer
    assert isinstance(new, torch.optim.SGD) and new is not opt
    assert {id(p) for g in new.param_groups for p in g["params"]} == {id(p) for p in res.model.parameters()}
    assert new.param_groups[0]["momentum"] == 0.9 and new.param_groups[0]["lr"] == res.lr
    assert opt.param_groups[0]["lr"] == 0.123  # the user's optimizer is untouched
    assert not any(c.remedy == "optimizer" for c in res.changes)


def test_tune_lr_without_batches_is_a_one_line_input_error() -> None:
    with pytest.raises(InputError, match="train_loader"):
        gd.repair(_net(), PLATEAU, tune_lr=True)


def test_tune_lr_off_by_default_leaves_the_lr_find_advice() -> None:
    res = gd.repair(_net(), PLATEAU, train_loader=_batches())
    assert res.lr is None and [c.kind for c in res.changes if c.remedy == "lr-find"] == ["advice"]
