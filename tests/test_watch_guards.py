"""watch does no harm: an error inside its hooks, the wrong optimizer and an unsupported model
never break the user's training loop, and each says so once, in one line."""

from __future__ import annotations

import tracemalloc
import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd

#: w.step() calls in a row without a step of the watched optimizer before watch warns (documented)
IDLE_CALLS = 100


def _hooks(model: nn.Module) -> int:
    """Hooks on the model's modules and parameters (torch's own registries)."""
    n = 0
    for m in model.modules():
        n += len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks)
        n += len(m._backward_pre_hooks) + len(m._forward_hooks_always_called)
    for p in model.parameters():
        n += len(p._backward_hooks or {}) + len(getattr(p, "_post_accumulate_grad_hooks", None) or {})
    return n


def test_error_inside_a_hook_warns_once_and_never_breaks_opt_step(tmp_path):
    """An error raised inside watch's optimizer hook warns once (naming graddoctor and the error),
    stops the recording (``w.failed``, detached), keeps the steps recorded before it, and
    ``opt.step()`` still updates the weights, then and on every later step, without a warning."""
    m = nn.Linear(3, 1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with gd.watch(m, opt, log_dir=tmp_path, flush_every=1) as w:
        def train_step():
            loss = m(torch.ones(2, 3)).sum()
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)

        train_step()
        write = w.output.write_steps

        def write_then_fail(records):  # an internal error inside the step hook, after the flush
            write(records)
            return 1 / 0

        w.output.write_steps = write_then_fail
        before = m.weight.detach().clone()
        with pytest.warns(UserWarning, match=r"graddoctor.watch: internal error.*ZeroDivisionError"):
            train_step()
        assert not torch.equal(before, m.weight)  # the optimizer stepped anyway
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            before = m.weight.detach().clone()
            train_step()  # no second warning, no error
            assert not torch.equal(before, m.weight)
    assert w.failed is not None and "ZeroDivisionError" in w.failed and not w.attached
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1]  # the step before the failure is kept


def test_wrong_optimizer_warns_once_and_pending_losses_stay_bounded():
    """``w.step(loss)`` called again and again while the optimizer given to watch never steps
    warns once (after 100 calls, naming the optimizer); the losses meanwhile take constant memory
    (not one entry per call) and are averaged into the next step of the watched optimizer."""
    m = nn.Linear(2, 1)
    stepped = torch.optim.SGD(m.parameters(), lr=0.1)
    given = torch.optim.SGD(m.parameters(), lr=0.1)  # never stepped in the loop
    n_warm, n_more = IDLE_CALLS + 20, 4000
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(m, given) as w:
            for i in range(n_warm):
                m(torch.ones(1, 2)).sum().backward()
                stepped.step()
                stepped.zero_grad()
                w.step(torch.tensor(float(i)))
            tracemalloc.start()
            try:
                start = tracemalloc.get_traced_memory()[0]
                for i in range(n_warm, n_warm + n_more):
                    w.step(torch.tensor(float(i)))
                grown = tracemalloc.get_traced_memory()[0] - start
            finally:
                tracemalloc.stop()
            m(torch.ones(1, 2)).sum().backward()
            given.step()  # the watched optimizer steps at last
    msgs = [str(c.message) for c in caught if "without a step of the SGD" in str(c.message)]
    assert len(msgs) == 1 and f"{IDLE_CALLS} w.step() calls" in msgs[0]
    assert grown < 4 * n_more  # less than a list slot (8 bytes) per call
    n = n_warm + n_more
    assert w.records()[1][0]["loss"] == pytest.approx((n - 1) / 2)  # the mean of 0 .. n-1


def test_watch_refuses_parameters_on_several_devices_in_one_line():
    """Parameters on two devices: a one-line ``GraddoctorError`` naming the devices, and nothing
    is left attached to the model; a model on one device is watched fine."""
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2, device="meta"))
    hooks = _hooks(net)
    with pytest.raises(gd.GraddoctorError, match=r"one device, found cpu, meta") as e:
        gd.watch(net)
    assert "\n" not in str(e.value)
    assert _hooks(net) == hooks  # nothing attached
    one = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    with gd.watch(one, example_inputs=torch.ones(1, 2)) as w:
        one(torch.ones(1, 2)).sum().backward()
        w.step()
    assert w.failed is None and len(w.records()[1]) == 1
