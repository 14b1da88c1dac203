"""How ``gd.watch(model, optimizer)`` pairs what it records with the optimizer steps of a plain loop.

Each test computes the truth with plain autograd (the gradient the step used, the mean loss of
its micro-batches, the optimizer steps the GradScaler really skipped) and compares the records.
The loops: ``w.step(loss)`` after ``opt.step()`` or before it, once per optimizer step or once
per micro-batch (gradient accumulation), with a ``GradScaler``, and closure optimizers (LBFGS).
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))


def _layer_norms(m: nn.Sequential) -> dict[str, float]:
    """The per-layer gradient norm (weight and bias together), as watch names the layers."""
    return {name: torch.cat([p.grad.flatten() for p in m[int(name)].parameters()]).norm().item()
            for name in ("0", "2")}


def _data(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return x, torch.randn(n, 1, generator=g) + torch.arange(n).float().unsqueeze(1) / 8  # losses differ


# ---------------------------------------------------------------- closures (LBFGS, opt.step(closure))

CLOSURE_OPTS = {
    "LBFGS": lambda p: torch.optim.LBFGS(p, lr=0.5, max_iter=5),
    "SGD": lambda p: torch.optim.SGD(p, lr=0.05),
    "Adam-kwarg": lambda p: torch.optim.Adam(p, lr=0.01),
}


@pytest.mark.parametrize("name", list(CLOSURE_OPTS))
def test_a_closure_step_records_its_first_closure_evaluation(name):
    """``opt.step(closure)``: each step records the gradients of its first closure evaluation (at
    the weights the step starts from; LBFGS returns that evaluation's loss) and its true update."""
    x, y = _data(64)
    m = _mlp()
    opt = CLOSURE_OPTS[name](m.parameters())
    first: list[dict] = []

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        if closure.fresh:
            first.append({"norms": _layer_norms(m), "loss": loss.item()})
            closure.fresh = False
        return loss

    updates = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the numbers are right
        with gd.watch(m, opt, update_every=1) as w:
            for _ in range(5):
                closure.fresh = True
                before = [p.detach().clone() for p in m.parameters()]
                loss = opt.step(closure=closure) if name == "Adam-kwarg" else opt.step(closure)
                w.step(loss)
                d = [(p.detach() - b).flatten() for p, b in zip(m.parameters(), before)]
                updates.append({"0": torch.cat(d[:2]).norm().item(), "2": torch.cat(d[2:]).norm().item()})
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    for rec, want, upd in zip(steps, first, updates):
        assert rec["grad_norm"] == pytest.approx(want["norms"], rel=1e-5)
        assert rec["loss"] == pytest.approx(want["loss"], rel=1e-6)
        assert rec["update_norm"] == pytest.approx(upd, rel=1e-4, abs=1e-9)
        assert not rec["skipped"]


def test_a_closure_step_of_a_subclass_that_calls_super_is_recorded_once():
    """A subclass whose ``step(closure)`` calls ``super().step(closure)`` runs the step hooks twice,
    nested: one row per step, with the gradients of its closure."""

    class MySGD(torch.optim.SGD):
        def step(self, closure=None):
            return super().step(closure)

    x, y = _data(32)
    m = _mlp()
    opt = MySGD(m.parameters(), lr=0.05)
    want = []

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        want.append(_layer_norms(m))
        return loss

    with gd.watch(m, opt) as w:
        for _ in range(3):
            w.step(opt.step(closure))
    steps = w.records()[1]
    assert len(steps) == 3
    for rec, norms in zip(steps, want):
        assert rec["grad_norm"] == pytest.approx(norms, rel=1e-5)


# ---------------------------------------------------------------- loss pairing in plain loops

def _run(order: str, acc: int, n_micro: int, *, flush_every: int = 50, epoch: int | None = None,
         read_between: bool = False, scaler: bool = False, inf_at: int | None = None):
    """A plain loop: ``acc`` micro-batches per optimizer step (a shorter last step at each
    ``epoch`` end, as Accelerate steps there), ``w.step(loss)`` at the end of each micro-batch
    ("after" the conditional ``opt.step()``) or before it, once per micro-batch or ("after-once" /
    "before-once") once per optimizer step with the steps' mean loss. Returns the records and
    the truth: per optimizer iteration its mean loss, gradient norms and whether it was skipped."""
    x, y = _data(4 * n_micro)
    m = _mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    sc = torch.amp.GradScaler("cpu", init_scale=2.0**8) if scaler else None
    truth, cur = [], []
    with gd.watch(m, opt, flush_every=flush_every, scaler=sc) as w:
        for i in range(n_micro):
            loss = F.mse_loss(m(x[4 * i: 4 * i + 4]), y[4 * i: 4 * i + 4])
            cur.append(loss.item())
            last = (i + 1) % acc == 0 or (epoch is not None and (i + 1) % epoch == 0) or i + 1 == n_micro
            k = len(cur) if last else acc
            (sc.scale(loss / k) if sc else loss / k).backward()
            if inf_at == i:
                m[0].weight.grad[0, 0] = math.inf
            if order == "before":
                w.step(loss)
            if order == "before-once" and last:
                w.step(sum(cur) / len(cur))
            if last:
                if sc:
                    sc.unscale_(opt)
                norms = _layer_norms(m)
                scale = sc.get_scale() if sc else None
                sc.step(opt) if sc else opt.step()
                if sc:
                    sc.update()
                opt.zero_grad()
                truth.append({"loss": sum(cur) / len(cur), "norms": norms,
                              "skipped": bool(sc) and sc.get_scale() < scale})
                cur = []
                if read_between:
                    w.records()  # between opt.step() and the w.step(loss) that closes the step
            if order == "after":
                w.step(loss)
            if order == "after-once" and last:
                w.step(truth[-1]["loss"])
    return w.records()[1], truth


ORDERS = ["after", "before", "after-once", "before-once"]


def _assert_paired(steps, truth):
    assert [s["step"] for s in steps] == list(range(1, len(truth) + 1))
    assert [s["skipped"] for s in steps] == [t["skipped"] for t in truth]
    for rec, t in zip(steps, truth):
        assert rec["loss"] == pytest.approx(t["loss"], rel=1e-6)
        if not t["skipped"]:
            assert rec["grad_norm"] == pytest.approx(t["norms"], rel=1e-5)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("acc", [1, 2, 4])
def test_each_step_records_the_mean_loss_of_its_own_micro_batches(order, acc):
    steps, truth = _run(order, acc, 16)
    assert len(truth) == 16 // acc
    _assert_paired(steps, truth)


@pytest.mark.parametrize("order", ORDERS)
def test_pairing_holds_across_flushes_and_records_between_the_step_and_its_loss(order):
    """A flush at every step (``flush_every=1``) and ``w.records()`` called right after each
    ``opt.step()`` do not move a loss to another step."""
    steps, truth = _run(order, 3, 12, flush_every=1, read_between=True)
    _assert_paired(steps, truth)


@pytest.mark.parametrize("order", ORDERS)
def test_uneven_steps_at_epoch_ends_pair_as_accelerate_steps_them(order):
    """Accelerate's ``accumulate``: 10 micro-batches per epoch, 3 per step, so each epoch ends
    with a one-micro-batch step."""
    steps, truth = _run(order, 3, 30, epoch=10)
    assert len(truth) == 12
    _assert_paired(steps, truth)


# ---------------------------------------------------------------- GradScaler

@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("acc", [1, 4])
def test_a_grad_scaler_records_one_row_per_optimizer_step_and_no_invented_skip(order, acc):
    steps, truth = _run(order, acc, 16, scaler=True)
    assert len(truth) == 16 // acc and not any(t["skipped"] for t in truth)
    _assert_paired(steps, truth)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("acc", [1, 4])
def test_a_grad_scaler_skip_is_flagged_at_its_own_step(order, acc):
    """inf gradients in micro-batch 9: the scaler skips optimizer iteration 9 // acc + 1, and
    only that one is recorded as skipped (its loss is its micro-batches' mean)."""
    steps, truth = _run(order, acc, 16, scaler=True, inf_at=9)
    assert [i + 1 for i, t in enumerate(truth) if t["skipped"]] == [9 // acc + 1]
    _assert_paired(steps, truth)


def test_a_closure_that_raised_does_not_shift_the_later_steps():
    """The user's closure raises in step 3 (caught by the loop): steps 4 and 5 record their own
    closure's gradients and their update; a step whose optimizer ignores the closure is recorded
    from the gradients after it, without an update."""
    x, y = _data(32)
    m = _mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    want = []

    def closure():
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        if closure.boom:
            raise ValueError("bad batch")
        want.append(_layer_norms(m))
        return loss

    with gd.watch(m, opt, update_every=1) as w:
        for i in range(5):
            closure.boom = i == 2
            try:
                w.step(opt.step(closure))
            except ValueError:
                pass
    steps = w.records()[1]
    assert w.failed is None and len(steps) == 4
    for rec, norms in zip(steps, want):
        assert rec["grad_norm"] == pytest.approx(norms, rel=1e-5) and "update_norm" in rec

    class Ignores(torch.optim.SGD):
        def step(self, closure=None):
            return super().step()

    opt = Ignores(m.parameters(), lr=0.05)
    closure.boom = False
    with gd.watch(m, opt, update_every=1) as w:
        for _ in range(2):
            want.clear()
            opt.zero_grad()
            F.mse_loss(m(x), y).backward()
            norms = _layer_norms(m)
            w.step(opt.step(closure))
    steps = w.records()[1]
    assert len(steps) == 2 and steps[-1]["grad_norm"] == pytest.approx(norms, rel=1e-5)
    assert not any("update_norm" in s for s in steps) and w.failed is None


def test_a_disabled_grad_scaler_is_no_scaler_and_no_warning():
    """``GradScaler("cpu", enabled=False)`` (AMP code run in fp32) has no per-optimizer state: watch
    used to warn that it "is not a torch.amp.GradScaler"."""
    m = _mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sc = torch.amp.GradScaler("cpu", enabled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with gd.watch(m, opt, scaler=sc) as w:
            for _ in range(3):
                loss = m(torch.randn(8, 4)).pow(2).mean()
                opt.zero_grad()
                sc.scale(loss).backward()
                sc.step(opt)
                sc.update()
                w.step(loss)
    steps = w.records()[1]
    assert [s["step"] for s in steps] == [1, 2, 3] and not any(s.get("skipped") for s in steps)
