"""Faults injected into a watched training loop: the user's exceptions (several types and
KeyboardInterrupt) inside forward, backward and the optimizer step, on sampled and unsampled
steps; a disk that fills up; a log_dir removed mid-run; two watchers on one log_dir. Each time
the user's exception reaches the user unchanged, watch's hooks are gone after the ``with``,
nothing is left on torch's mode stack, and the run log reads back."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.measure.monitor.steps import StepGate
from graddoctor.runlog import read_run


class UserError(Exception):
    """An exception type of the user's own."""


class _Raise(torch.autograd.Function):
    exc: BaseException | None = None

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        if _Raise.exc is not None:
            raise _Raise.exc
        return g


class _Net(nn.Module):
    """Module activations, functional activations and a custom Function."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b, self.c = nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Linear(8, 1)
        self.exc: BaseException | None = None

    def forward(self, x):
        h = self.act(self.a(x))
        h = F.relu(self.b(h))
        if self.exc is not None:
            raise self.exc
        return self.c(_Raise.apply(h))


class _SGD(torch.optim.SGD):
    exc: BaseException | None = None

    def step(self, closure=None):
        if self.exc is not None:
            raise self.exc
        return super().step(closure)


def _hooks(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    n = sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
            + len(m._backward_pre_hooks) for m in model.modules())
    return n + len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


def _modes() -> int:
    return torch._C._len_torch_function_stack()


EXCEPTIONS = [ValueError("bad value"), RuntimeError("bad runtime"), UserError("mine"), KeyError("k"),
              KeyboardInterrupt()]


@pytest.mark.parametrize("where", ["forward", "backward", "step"])
@pytest.mark.parametrize("sampled", [True, False], ids=["sampled", "unsampled"])
@pytest.mark.parametrize("exc", EXCEPTIONS, ids=lambda e: type(e).__name__)
def test_a_users_exception_escapes_the_with_unchanged(tmp_path, where, sampled, exc):
    torch.manual_seed(0)
    net, modes = _Net(), _modes()
    opt = _SGD(net.parameters(), lr=0.01)
    every = 1 if sampled else 0  # 0: no step is sampled
    with pytest.raises(type(exc)) as info:
        with gd.watch(net, opt, log_dir=tmp_path, activation_every=every, output_grads=sampled,
                      flush_every=2) as w:
            for i in range(5):
                fault = exc if i == 3 else None
                net.exc = fault if where == "forward" else None
                _Raise.exc = fault if where == "backward" else None
                opt.exc = fault if where == "step" else None
                try:
                    loss = net(torch.randn(6, 4)).pow(2).mean()
                    loss.backward()
                    opt.step()
                finally:
                    _Raise.exc = None
                opt.zero_grad()
                w.step(loss)
    assert info.value is exc or (isinstance(info.value, type(exc)) and str(exc) in str(info.value))
    assert w.failed is None and not w.attached
    assert _hooks(net, opt) == 0 and _modes() == modes
    meta, steps = read_run(tmp_path)
    assert [s["step"] for s in steps] == [1, 2, 3] + ([4] if where == "step" else [])
    assert ("act" in steps[0]) == sampled


@pytest.mark.parametrize("where", ["forward", "backward", "step"])
@pytest.mark.parametrize("exc", [ValueError("skip this batch"), KeyboardInterrupt()], ids=lambda e: type(e).__name__)
def test_training_goes_on_after_a_caught_exception(where, exc):
    """The user catches the exception inside the ``with`` and trains on: the later steps are
    recorded (with activation statistics), no warning, no hook left afterwards."""
    torch.manual_seed(0)
    net, modes = _Net(), _modes()
    opt = _SGD(net.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gd.watch(net, opt, activation_every=1, output_grads=True) as w:
            for i in range(6):
                fault = exc if i == 2 else None
                net.exc = fault if where == "forward" else None
                _Raise.exc = fault if where == "backward" else None
                opt.exc = fault if where == "step" else None
                try:
                    loss = net(torch.randn(6, 4)).pow(2).mean()
                    loss.backward()
                    opt.step()
                except type(exc):
                    opt.zero_grad()
                    continue
                finally:
                    _Raise.exc = None
                opt.zero_grad()
                w.step(loss)
    assert w.failed is None and _hooks(net, opt) == 0 and _modes() == modes
    steps = w.records()[1]
    assert len(steps) == 5 if where != "step" else len(steps) == 6  # step: recorded in the pre-hook
    assert all("act" in s for s in steps[-3:]) and all("out_grad_norm" in s for s in steps[-3:])


def test_a_step_that_raised_never_swallows_the_next_one():
    """A step that raised leaves the step gate open (no post-hook); the next step's gradient,
    made right after ``zero_grad()`` freed the old one, mostly gets the freed tensor's address
    and version 0. The gate must still tell it from the inner call of a nested pair."""
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    for _ in range(20):
        gate = StepGate()
        p.sum().backward()
        assert gate.enter(opt)  # the step raises: no exit()
        loss = p.sum()
        opt.zero_grad()  # frees the gradient; the next one is made by the backward just below
        loss.backward()
        assert gate.enter(opt), "the step after one that raised was taken for a nested call"
        assert not gate.enter(opt) and gate.exit()  # a nested pair is still let through once
        opt.zero_grad()


class _FullDisk:
    """A file sink whose writes fail with ENOSPC after ``ok`` writes."""

    def __init__(self, ok: int) -> None:
        self.ok, self.closed = ok, False

    def write_meta(self, meta):
        self._write()

    def write_steps(self, steps):
        self._write()

    def _write(self):
        self.ok -= 1
        if self.ok < 0:
            raise OSError(28, "No space left on device")

    def close(self):
        self.closed = True
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("ok", [0, 1, 3])
def test_a_full_disk_warns_once_and_training_goes_on(tmp_path, ok):
    net = _Net()
    opt = _SGD(net.parameters(), lr=0.01)
    sink = _FullDisk(ok)
    # the sink is dropped with one warning; the recording (in memory) goes on
    with pytest.warns(UserWarning, match="_FullDisk sink failed.*No space left") as rec:
        with gd.watch(net, opt, log_dir=tmp_path, sinks=[sink], flush_every=1, activation_every=1) as w:
            for _ in range(6):
                before = net.c.weight.detach().clone()
                net(torch.randn(6, 4)).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
                assert not torch.equal(before, net.c.weight)
    assert len([r for r in rec if "graddoctor" in str(r.message)]) == 1
    assert sink.closed and not w.attached and _hooks(net, opt) == 0
    assert w.failed is None and len(w.records()[1]) == 6


def test_log_dir_removed_mid_run_is_started_again(tmp_path):
    """The log_dir is deleted while training runs: the next flush writes it again (meta line
    first), no warning, and the file reads back with the steps written after the removal."""
    log = tmp_path / "run"
    net = _Net()
    opt = _SGD(net.parameters(), lr=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gd.watch(net, opt, log_dir=log, flush_every=2) as w:
            for i in range(8):
                if i == 4:
                    shutil.rmtree(log)
                net(torch.randn(6, 4)).pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
    assert w.failed is None and os.path.exists(log / "watch.jsonl")
    meta, steps = read_run(log)
    # flush_every=2: steps 3 and 4 are flushed at step 5, after the removal
    assert meta["run_id"] == w.run_id and [s["step"] for s in steps] == [3, 4, 5, 6, 7, 8]


def test_two_watchers_on_one_dir_with_a_fault_in_one(tmp_path):
    """Generator and discriminator share a log_dir; the generator's forward raises once (caught):
    both runs read back, each with its own steps only."""
    gen, disc = _Net(), nn.Linear(1, 1)
    og, od = _SGD(gen.parameters(), lr=0.01), torch.optim.SGD(disc.parameters(), lr=0.01)
    with gd.watch(gen, og, log_dir=tmp_path, flush_every=2) as wg, \
            gd.watch(disc, od, log_dir=tmp_path, flush_every=3) as wd:
        for i in range(6):
            gen.exc = UserError("once") if i == 2 else None
            try:
                fake = gen(torch.randn(6, 4))
            except UserError:
                continue
            disc(fake.detach()).mean().backward()
            od.step()
            od.zero_grad()
            disc(fake).mean().backward()
            og.step()
            og.zero_grad()
    g = read_run(tmp_path, run=wg.run_id)[1]
    d = read_run(tmp_path, run=wd.run_id)[1]
    assert [s["step"] for s in g] == [1, 2, 3, 4, 5] and [s["step"] for s in d] == [1, 2, 3, 4, 5]
    assert set(d[0]["grad_norm"]) == {""} and "a" in set(g[0]["grad_norm"])
    assert _hooks(gen, og) == 0 and _hooks(disc, od) == 0
