"""Trial of ``gd.watch`` on three reported misuses: two watchers on one model (the user's next
forward raised a TypeError from graddoctor's hook), ``w.step()`` without an optimizer called where
no gradient exists (nothing recorded, no word said), and ``sinks=`` given as one string or with a
misspelt name. Each test failed before its fix."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd
from graddoctor.errors import InputError
from graddoctor.measure.monitor.hooksafe import in_own_forward, own_forward
from graddoctor.measure.monitor.steps import ORDER_CALLS

ORDER_WARNING = "graddoctor.watch: no gradients at w.step()"


def _model(seed: int = 0) -> tuple[nn.Sequential, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    return m, torch.optim.SGD(m.parameters(), lr=0.1)


X = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
Y = (X[:, 0] > 0).long()


def _train(m: nn.Module, opt: torch.optim.Optimizer, watchers: list, steps: int) -> None:
    for _ in range(steps):
        loss = F.cross_entropy(m(X), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for w in watchers:
            w.step(loss)


def _hooks(m: nn.Module) -> int:
    return sum(len(x._forward_pre_hooks) + len(x._forward_hooks) + len(x._forward_pre_hooks_with_kwargs)
               + len(x._backward_hooks) for x in m.modules())


def _same(a: list[dict], b: list[dict]) -> None:
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key in ("loss", "grad_norm", "weight_norm", "update_norm", "act", "out_grad_norm"):
            assert ra.get(key) == rb.get(key), (ra["step"], key)


# ---------------------------------------------------------------- two watchers on one model

def test_two_watchers_on_one_model_do_not_break_the_forward():
    """The repro: ``w1 = gd.watch(model, opt); w2 = gd.watch(model, opt); model(x)`` raised
    ``TypeError: _safe_on_forward() missing 'kwargs'``; now both record the step."""
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no internal-error warning either
        w1 = gd.watch(model, opt)
        with pytest.warns(UserWarning, match="still attached to this model"):  # the one line that says so
            w2 = gd.watch(model, opt)
        loss = model(torch.randn(8, 4)).sum()
        loss.backward()
        opt.step()
        w1.step(loss)
        w2.step(loss)
    assert w1.failed is None and w2.failed is None
    assert len(w1.records()[1]) == len(w2.records()[1]) == 1
    w1.detach()
    w2.detach()
    assert _hooks(model) == 0


@pytest.mark.parametrize("sampled", [True, False])
@pytest.mark.parametrize("first_off", ["w1", "w2"])
def test_two_watchers_each_record_what_one_alone_records(first_off, sampled):
    """Two watchers (activation statistics and output gradients on every step, or none) record
    exactly what a single watcher records; detaching either leaves the other recording; both off:
    no hook. (Unsampled: the first forward raised the TypeError.)"""
    opts = {"activation_every": 1, "output_grads": True} if sampled else {"activation_every": 0}
    m, opt = _model()
    with gd.watch(m, opt, **opts) as w0:
        _train(m, opt, [w0], 10)
    ref = w0.records()[1]
    m, opt = _model()
    w1, w2 = gd.watch(m, opt, **opts), gd.watch(m, opt, **opts)
    _train(m, opt, [w1, w2], 6)
    off, on = (w1, w2) if first_off == "w1" else (w2, w1)
    off.detach()
    _train(m, opt, [on], 4)
    on.detach()
    assert off.failed is None and on.failed is None
    assert ("act" in ref[0] and "out_grad_norm" in ref[0]) is sampled
    _same(ref[:6], off.records()[1])
    _same(ref, on.records()[1])
    assert _hooks(m) == 0
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_a_second_watcher_added_mid_run_and_in_a_with_block():
    """A watcher added after some steps of a first one (a notebook cell re-run inside the first
    ``with``): both keep recording, the first one's steps go on from where they were."""
    m, opt = _model()
    with gd.watch(m, opt, activation_every=2) as w1:
        _train(m, opt, [w1], 3)
        with gd.watch(m, opt, activation_every=2) as w2:
            _train(m, opt, [w1, w2], 4)
        _train(m, opt, [w1], 2)
    assert [r["step"] for r in w1.records()[1]] == list(range(1, 10))
    assert [r["step"] for r in w2.records()[1]] == list(range(1, 5))
    assert all(r["grad_norm"]["0"] is not None for r in w2.records()[1])
    assert _hooks(m) == 0


def test_watch_hooks_ignore_graddoctors_own_forwards():
    """A forward inside ``own_forward()`` (a watcher's mapping trace) is no training forward for
    another watcher: it neither maps nor samples on it."""
    m, opt = _model()
    w = gd.watch(m, opt, activation_every=1)
    with own_forward():
        assert in_own_forward()
        m(X)
    assert not in_own_forward()
    assert w._meta is None and not w.forwards.acts  # not mapped, nothing sampled
    _train(m, opt, [w], 1)
    w.detach()
    assert w._meta is not None and "act" in w.records()[1][0]


def test_a_hook_called_without_kwargs_is_harmless():
    """torch calls a pre-hook removed during its forward without its kwargs (the with_kwargs flag
    goes with the hook): the released hook does nothing."""
    m, opt = _model()
    w = gd.watch(m, opt)
    fw = w.forwards
    fw.disarm()
    fw._safe_on_forward(m, (X,))  # raised TypeError before (kwargs was required)
    assert w.failed is None and w._meta is None
    w.detach()


# ---------------------------------------------------------------- w.step() where no gradient is

def _sigmoid_loop(order: str, optimizer: bool, steps: int = 6) -> tuple[list[str], list]:
    m, opt = _model()
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        with gd.watch(m, opt if optimizer else None) as w:
            for _ in range(steps):
                loss = F.cross_entropy(m(X), Y)
                if order == "step-first":
                    w.step(loss)
                loss.backward()
                if order == "healthy":
                    w.step(loss)
                opt.step()
                opt.zero_grad()
                if order == "step-last":
                    w.step(loss)
    return [str(x.message) for x in ws if ORDER_WARNING in str(x.message)], ws


@pytest.mark.parametrize("order", ["step-first", "step-last"])
def test_w_step_where_no_gradient_exists_warns_once(order):
    """No optimizer, ``w.step()`` before ``backward()`` or after ``zero_grad()``: every gradient
    read is None; one warning says where to call it (it said nothing before)."""
    msgs, ws = _sigmoid_loop(order, optimizer=False)
    assert msgs == ["graddoctor.watch: no gradients at w.step(): call it after loss.backward() and "
                    "before optimizer.zero_grad(), or pass optimizer= to gd.watch"]
    assert next(x for x in ws if ORDER_WARNING in str(x.message)).filename == __file__


def test_w_step_order_warning_waits_for_the_first_calls():
    """The warning comes at the ``ORDER_CALLS``-th gradient-less call, not before."""
    assert _sigmoid_loop("step-last", optimizer=False, steps=ORDER_CALLS - 1)[0] == []
    assert len(_sigmoid_loop("step-last", optimizer=False, steps=ORDER_CALLS)[0]) == 1


@pytest.mark.parametrize("order,optimizer", [("healthy", False), ("step-last", True), ("step-first", True),
                                             ("healthy", True)])
def test_no_step_order_warning_on_healthy_loops_or_with_an_optimizer(order, optimizer):
    """``w.step()`` between ``backward()`` and ``zero_grad()``, or any order with an optimizer
    (its step hook reads the gradients): no warning."""
    assert _sigmoid_loop(order, optimizer)[0] == []


def test_step_order_check_does_not_fire_on_a_frozen_model_or_after_a_gradient():
    """A model with no trainable parameter, or a first call that saw a gradient: no warning later."""
    m, _ = _model()
    m.requires_grad_(False)
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        with gd.watch(m) as w:
            for _ in range(ORDER_CALLS + 1):
                w.step(torch.tensor(1.0))
    assert not [x for x in ws if ORDER_WARNING in str(x.message)]


# ---------------------------------------------------------------- sinks=

def test_sinks_as_one_string_is_a_list_of_one(tmp_path):
    """``sinks="jsonl"`` gave ``unknown sink 'j'``; it is now ``["jsonl"]``."""
    m, opt = _model()
    with gd.watch(m, opt, log_dir=tmp_path, sinks="jsonl") as w:
        _train(m, opt, [w], 2)
    assert (tmp_path / "watch.jsonl").exists()
    assert [r["step"] for r in w.records()[1]] == [1, 2]


@pytest.mark.parametrize("log_dir", [None, "dir"])
def test_a_misspelt_sink_is_refused_with_or_without_log_dir(log_dir, tmp_path):
    """``sinks=["tensorbord"]`` was accepted silently without a log_dir: one InputError line names
    the known sinks (and the close one), and nothing stays hooked."""
    m, opt = _model()
    with pytest.raises(InputError) as e:
        gd.watch(m, opt, log_dir=None if log_dir is None else tmp_path, sinks=["tensorbord"])
    msg = str(e.value)
    assert "\n" not in msg and "'tensorbord'" in msg and "did you mean 'tensorboard'" in msg
    assert "'jsonl', 'tensorboard', 'wandb'" in msg
    assert _hooks(m) == 0 and not opt._optimizer_step_pre_hooks


@pytest.mark.parametrize("sinks", [[object()], 3])
def test_a_sink_that_is_no_sink_is_refused_without_log_dir(sinks):
    """A sink object without the sink methods, or ``sinks=`` that is no list: one InputError line."""
    m, opt = _model()
    with pytest.raises(InputError) as e:
        gd.watch(m, opt, sinks=sinks)
    assert "\n" not in str(e.value) and "sink" in str(e.value)


def test_one_sink_object_alone_is_a_list_of_one(tmp_path):
    """A ``Sink`` object given alone (not in a list) is used."""

    class Mem:
        def __init__(self) -> None:
            self.steps: list[dict] = []

        def write_meta(self, meta: dict) -> None:
            pass

        def write_steps(self, steps: list[dict]) -> None:
            self.steps.extend(steps)

        def close(self) -> None:
            pass

    sink = Mem()
    m, opt = _model()
    with gd.watch(m, opt, log_dir=tmp_path, sinks=sink) as w:
        _train(m, opt, [w], 2)
    assert [r["step"] for r in sink.steps] == [1, 2]
