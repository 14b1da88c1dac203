"""watch leaves no trace: hooks removed (also on exceptions), no memory growth, crash-safe log,
torch.compile."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.runlog import read_run


class Net(nn.Module):
    """Module activations, a functional one (needs the TorchFunctionMode) and a failure switch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b = nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1)
        self.fail = False

    def forward(self, x):
        h = torch.tanh(self.act(self.a(x)))
        if self.fail:
            raise RuntimeError("boom inside forward")
        return self.b(h)


def hook_count(model: nn.Module, opt: torch.optim.Optimizer) -> int:
    n = len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)
    for m in model.modules():
        n += len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
        n += len(m._backward_pre_hooks) + len(m._forward_hooks_always_called)
    return n


def mode_depth() -> int:
    return torch._C._len_torch_function_stack()


def one_step(net, opt, w):
    loss = net(torch.randn(4, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad()
    w.step(loss)


def test_hooks_removed_after_with_and_idempotent():
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    base = hook_count(net, opt)
    w = gd.watch(net, opt, activation_every=1, output_grads=True)
    w.attach()  # idempotent
    assert hook_count(net, opt) == base + 5  # 2 forward (one always_call) + 2 optimizer
    one_step(net, opt, w)
    w.detach()
    w.detach()  # idempotent
    assert hook_count(net, opt) == base and mode_depth() == 0



def test_unsampled_forwards_run_without_any_hook():
    """The root's forward hooks exist only while a sampled (or the first) forward is awaited;
    sampled steps: 1, 1+k, 1+2k, ... and the powers of two below k."""
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    base = hook_count(net, opt)
    counts = []
    with gd.watch(net, opt, activation_every=6) as w:  # maps on the first forward
        for _ in range(14):
            counts.append(hook_count(net, opt) - base)  # before this step's forward
            one_step(net, opt, w)
    sampled = [i + 1 for i, s in enumerate(w.records()[1]) if "act" in s]
    assert sampled == [1, 2, 4, 7, 13]
    # the optimizer's 2 hooks always; the root's 3 (pre, post, always-called post) before those
    assert counts == [5 if i + 1 in sampled else 2 for i in range(14)]
    assert hook_count(net, opt) == base


@pytest.mark.filterwarnings("ignore:graddoctor.watch. ModelMap failed")
def test_exception_inside_with_and_inside_sampled_forward_leaves_no_hooks():
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    base = hook_count(net, opt)
    with pytest.raises(ValueError, match="user error"):
        with gd.watch(net, opt, activation_every=1) as w:
            one_step(net, opt, w)
            raise ValueError("user error")
    assert hook_count(net, opt) == base and mode_depth() == 0
    # an exception raised in the middle of a sampled forward (sampling hooks and mode active)
    with pytest.raises(RuntimeError, match="boom"):
        with gd.watch(net, opt, activation_every=1) as w:
            net.fail = True
            net(torch.randn(2, 4))
    net.fail = False
    assert hook_count(net, opt) == base and mode_depth() == 0
    assert w.records()[1] == []


def _mem_after(fn, n):
    gc.collect()
    tracemalloc.start()
    try:
        fn(n // 5)  # warm-up: caches, interned strings
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        fn(n)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_1000_attach_detach_cycles_no_hooks_no_growth():
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    base = hook_count(net, opt)
    w = gd.watch(net, opt, activation_every=1, example_inputs=torch.randn(2, 4), history=0)
    w.detach()

    def reuse(n):
        for _ in range(n):
            w.attach()
            w.detach()

    def fresh(n):
        for i in range(n):
            with gd.watch(net, opt, activation_every=1, update_every=1, history=0) as w2:
                if i % 10 == 0:
                    one_step(net, opt, w2)

    grown_reuse = _mem_after(reuse, 1000)
    grown_fresh = _mem_after(fresh, 1000)
    assert hook_count(net, opt) == base and mode_depth() == 0
    # a leak of even one small Python object per cycle (a tensor is ~60 B, a dict ~200 B) would
    # grow >= 60 kB over 1000 cycles; what stays alive at the end (the last cycle's objects) is less
    assert grown_reuse < 32_000, grown_reuse
    assert grown_fresh < 32_000, grown_fresh


_CRASH_SCRIPT = textwrap.dedent("""
    import sys, torch, graddoctor as gd
    from torch import nn
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    with gd.watch(net, opt, sys.argv[1], flush_every=3, activation_every=2) as w:
        i = 0
        while True:
            loss = net(torch.randn(16, 8)).pow(2).mean()
            loss.backward(); opt.step(); opt.zero_grad(); w.step(loss)
            i += 1
            if i == 30:
                print("running", flush=True)
""")


@pytest.mark.slow
def test_sigkill_mid_run_leaves_parseable_jsonl(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(_CRASH_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "run")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running", proc.stderr.read()
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    text = (tmp_path / "run" / "watch.jsonl").read_text()
    lines = text.split("\n")
    complete = lines[:-1]  # everything before the last newline
    assert len(complete) > 30
    for line in complete:
        json.loads(line)
    meta, steps = read_run(tmp_path / "run")
    assert [s["step"] for s in steps] == list(range(1, len(steps) + 1))


@pytest.mark.slow
def test_torch_compile_same_norms():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    compiled = torch.compile(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(16, 4)
    want = []
    with pytest.warns(UserWarning, match="compile"):
        w = gd.watch(compiled, opt)
    with w:
        for _ in range(3):
            loss = compiled(x).pow(2).mean()
            loss.backward()
            want.append({n: (m.weight.grad.norm() ** 2 + m.bias.grad.norm() ** 2).sqrt().item()
                         for n, m in (("0", net[0]), ("2", net[2]))})
            opt.step()
            opt.zero_grad()
            w.step(loss)
    meta, steps = w.records()
    assert meta["config"]["mapped"] and [ly["name"] for ly in meta["layers"]] == ["0", "2"]
    assert len(steps) == 3
    for rec, ref in zip(steps, want):
        assert rec["grad_norm"] == pytest.approx(ref, rel=1e-5)
