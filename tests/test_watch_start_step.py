"""``gd.watch(..., start_step=N)``: a plain loop resumed from a checkpoint into the same log
numbers its steps from N + 1, as the Lightning and Hugging Face callbacks do (a new-user trial:
both runs of a resumed loop were numbered 1-20); autofix judges the resumed steps on their own."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.runlog import read_run


def _train(w, net, opt, n: int) -> None:
    for _ in range(n):
        loss = net(torch.randn(8, 3)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        w.step(loss)


def test_a_resumed_loop_continues_the_step_numbers(tmp_path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with gd.watch(net, opt, log_dir=tmp_path) as w:
        _train(w, net, opt, 20)
    with gd.watch(net, opt, log_dir=tmp_path, start_step=20) as w:
        _train(w, net, opt, 15)
    assert [s["step"] for s in w.records()[1]] == list(range(21, 36))
    _, steps = read_run(tmp_path)  # the log's latest run
    assert steps[0]["step"] == 21 and steps[-1]["step"] == 35


def test_autofix_judges_the_resumed_steps_on_their_own() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    with gd.watch(net, opt, autofix=True, start_step=500) as w:
        assert w._since == w._checked == 500
        _train(w, net, opt, 12)
    assert [s["step"] for s in w.records()[1]][:2] == [501, 502] and w.fixes == []


@pytest.mark.parametrize("bad", [-1, 2.5, True, "10"])
def test_a_bad_start_step_is_one_line(bad) -> None:
    net = nn.Linear(3, 1)
    with pytest.raises(InputError, match="start_step must be an int >= 0"):
        gd.watch(net, torch.optim.SGD(net.parameters(), lr=0.1), start_step=bad)
