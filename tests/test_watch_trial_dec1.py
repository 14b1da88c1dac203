"""Trial of ``gd.watch`` on loops not covered before: ``w.step`` every k steps, skipped batches,
a NaN batch on an activation-sampled step, a ReLU body killed mid-run by a learning rate, a part
unfrozen mid-run. Each test failed before its fix; the truth comes from plain autograd or from
records built by hand."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd
from graddoctor.diagnose.training import training_findings
from graddoctor.measure.monitor.pairing import FreshGrads
from graddoctor.runlog import read_run


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _batch(g: torch.Generator, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g) + i  # losses differ


def _losses(w) -> dict[int, float]:
    return {s["step"]: s["loss"] for s in w.records()[1] if s.get("loss") is not None}


# ---------------------------------------------------------------- loss pairing

@pytest.mark.parametrize("offset", [0, 1])
def test_w_step_before_opt_step_every_k_steps_gives_each_loss_to_its_own_step(offset):
    """``w.step(loss)`` between ``backward()`` and ``opt.step()``, every 3rd iteration: each loss is
    the step's it was computed for (it went to the step before it)."""
    m, g, truth = _mlp(), torch.Generator().manual_seed(1), {}
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    with gd.watch(m, opt) as w:
        for i in range(15):
            loss = F.mse_loss(m(_batch(g, i)[0]), _batch(g, i)[1])
            loss.backward()
            truth[i + 1] = loss.item()
            if i % 3 == offset:
                w.step(loss)
            opt.step()
            opt.zero_grad()
    got = _losses(w)
    assert sorted(got) == [t + 1 for t in range(15) if t % 3 == offset]
    assert all(got[t] == pytest.approx(truth[t], rel=1e-6) for t in got)


@pytest.mark.parametrize("backward", [False, True])
def test_a_batch_the_loop_skips_does_not_shift_the_later_losses(backward):
    """A bad batch the loop skips (``w.step(loss)`` with no ``opt.step()``, with or without its
    backward) goes into the next step's mean; every later step keeps its own loss (all of them
    were one step off)."""
    m, g, truth, step = _mlp(), torch.Generator().manual_seed(1), {}, 0
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    with gd.watch(m, opt) as w:
        for i in range(20):
            x, y = _batch(g, i)
            loss = F.mse_loss(m(x), y)
            if i == 8:
                if backward:
                    loss.backward()
                opt.zero_grad()
                w.step(loss)
                skipped = loss.item()
                continue
            loss.backward()
            opt.step()
            opt.zero_grad()
            step += 1
            truth[step] = loss.item()
            w.step(loss)
    got = _losses(w)
    assert sorted(got) == list(range(1, 20))
    assert got[9] == pytest.approx((skipped + truth[9]) / 2, rel=1e-6)
    assert all(got[t] == pytest.approx(truth[t], rel=1e-6) for t in got if t != 9)


def test_fresh_grads_tells_a_new_backward_from_cleared_or_used_gradients():
    p = nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    marks = FreshGrads()
    (p * 2).sum().backward()
    opt.step()
    marks.mark(opt)
    assert not marks.fresh()  # the gradient the step used
    opt.zero_grad(set_to_none=False)
    assert not marks.fresh()  # zeroed in place: one change
    (p * 2).sum().backward()
    assert marks.fresh()  # zeroed, then a backward added into it
    opt.zero_grad()
    assert not marks.fresh()  # cleared (None)
    (p * 2).sum().backward()
    assert marks.fresh()  # a new gradient tensor


# ---------------------------------------------------------------- a NaN batch

def _flat_run(n: int = 60, layers: int = 3) -> tuple[dict, list[dict]]:
    meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(layers)],
            "activations": [{"name": "a", "kind": "relu", "family": "relu"}]}
    steps = [{"step": t, "loss": 2.3 * 0.98 ** t, "grad_norm": {str(i): 0.1 for i in range(layers)},
              "nonfinite": {str(i): 0 for i in range(layers)}, "weight_norm": {str(i): 1.0 for i in range(layers)}}
             for t in range(1, n + 1)]
    return meta, steps


def test_a_nan_batch_skipped_on_an_activation_sampled_step_is_a_warning():
    """The loop skipped a batch with a NaN input: its loss and the activations sampled on its
    forward are NaN, the gradients and every later loss finite: the weights never saw it (an error
    before, because the sampled activations were NaN too)."""
    meta, steps = _flat_run()
    steps[29]["loss"] = math.nan
    steps[29]["act"] = {"a": {"mean": math.nan, "std": math.nan, "zero_frac": 0.5, "sat_frac": 0.0}}
    found = [f for f in training_findings(meta, steps) if f.code == "non-finite"]
    assert [(f.severity, f.step) for f in found] == [("warning", 30)]
    steps[29]["loss"] = 1.0  # activations non-finite with a finite loss: not that batch
    assert [f.severity for f in training_findings(meta, steps) if f.code == "non-finite"] == ["error"]


# ---------------------------------------------------------------- a body that dies mid-run

def _dying_run(n: int = 150, die_at: int = 50) -> tuple[dict, list[dict]]:
    """7 weight layers: a head two orders above a flat body (a head step: no finding), then from
    ``die_at`` no gradient below the last layer (every ReLU dead); the loss overshoots at steps
    2-5 (a learning rate far too high), then sits at the class prior."""
    names = [str(i) for i in range(7)]
    meta = {"layers": [{"name": n, "kind": "linear", "activation": "relu"} for n in names],
            "activations": [], "config": {"optimizer": "SGD"}}
    steps = []
    for t in range(1, n + 1):
        body = 0.0 if t >= die_at else 1e-4
        g = {nm: (0.1 if i >= 5 else body) for i, nm in enumerate(names)}
        loss = 2.45 if t == 1 else 3.4 if t <= 5 else 2.303 + 0.01 * ((t * 7) % 3 - 1)
        steps.append({"step": t, "loss": loss, "grad_norm": g, "nonfinite": dict.fromkeys(names, 0),
                      "weight_norm": dict.fromkeys(names, 2.0)})
    return meta, steps


def test_a_relu_body_that_dies_mid_run_is_a_vanishing_gradient_error():
    """The first profile over the threshold is a head above a flat body (no finding, as for a BERT
    classifier); the rule used to stop there and miss the dead body that followed."""
    meta, steps = _dying_run()
    found = {f.code: f for f in training_findings(meta, steps)}
    f = found["vanishing-gradient"]
    assert f.severity == "error" and f.step == 50 and "no gradient reaches the input side" in f.message
    assert f.evidence["stuck_after_settling"] is True  # the loss has not moved since: harm


def test_a_head_above_a_flat_body_that_stays_alive_is_still_no_finding():
    meta, steps = _dying_run(die_at=10**6)
    assert [f.code for f in training_findings(meta, steps) if f.code == "vanishing-gradient"] == []


# ---------------------------------------------------------------- a part unfrozen mid-run

@pytest.mark.parametrize("how", ["requires_grad", "add_param_group"])
def test_a_layer_unfrozen_mid_run_gets_its_updates_measured_and_counts_as_trainable(tmp_path, how):
    m, g = _mlp(), torch.Generator().manual_seed(1)
    m[0].requires_grad_(False)
    params = m.parameters() if how == "requires_grad" else m[2].parameters()
    opt = torch.optim.SGD(params, lr=0.05)
    with gd.watch(m, opt, log_dir=tmp_path, update_every=2, weight_every=2) as w:
        for i in range(12):
            if i == 6:
                m[0].requires_grad_(True)
                if how == "add_param_group":
                    opt.add_param_group({"params": list(m[0].parameters())})
            x, y = _batch(g, i)
            loss = F.mse_loss(m(x), y)
            loss.backward()
            before = m[0].weight.detach().clone()
            opt.step()
            opt.zero_grad()
            moved = (m[0].weight.detach() - before).norm().item()
            w.step(loss)
    for meta, steps in (w.records(), read_run(tmp_path)):
        upd = {s["step"]: s["update_norm"] for s in steps if "update_norm" in s}
        assert all("0" not in u for t, u in upd.items() if t <= 6)
        assert [t for t, u in upd.items() if "0" in u] == [t for t in upd if t > 6]
        assert meta["layers"][0]["trainable"] is True and meta["layers"][0]["unfrozen_at"] == 7
    assert moved > 0


# ---------------------------------------------------------------- frozen layers and a plateau

def test_a_plateau_with_most_weight_layers_frozen_names_them_not_every_layer():
    """Three of four weight layers left frozen (forgot to unfreeze): the plateau without a
    gradient-flow cause said "gradients reach every layer"; it now names the frozen ones."""
    meta = {"layers": [{"name": str(i), "kind": "linear", "trainable": i == 3} for i in range(4)],
            "activations": []}
    steps = [{"step": t, "loss": 2.3 + 0.002 * ((t * 7) % 5), "grad_norm": {"0": None, "1": None, "2": None, "3": 0.1},
              "weight_norm": dict.fromkeys("0123", 1.0)} for t in range(1, 101)]
    f = next(f for f in training_findings(meta, steps) if f.code == "loss-plateau")
    assert "3 of 4 weight layers are frozen" in f.message and "every trainable layer" in f.message
    meta["layers"] = [dict(ly, trainable=True) for ly in meta["layers"]]
    steps = [dict(s, grad_norm=dict.fromkeys("0123", 0.1)) for s in steps]
    f = next(f for f in training_findings(meta, steps) if f.code == "loss-plateau")
    assert "frozen" not in f.message


@pytest.mark.parametrize("added", [False, True])
def test_a_layer_unfrozen_but_not_given_to_the_optimizer_warns_once(added):
    """Unfrozen mid-run without ``add_param_group``: its gradient accumulates and it never moves;
    watch said nothing (the attach-time check had seen it frozen)."""
    m, g = _mlp(), torch.Generator().manual_seed(1)
    m[0].requires_grad_(False)
    opt = torch.optim.SGD(m[2].parameters(), lr=0.05)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with gd.watch(m, opt, update_every=2) as w:
            for i in range(12):
                if i == 4:
                    m[0].requires_grad_(True)
                    if added:
                        opt.add_param_group({"params": list(m[0].parameters())})
                x, y = _batch(g, i)
                F.mse_loss(m(x), y).backward()
                opt.step()
                opt.zero_grad()
                w.step()
    lines = [str(x.message) for x in seen if "not in the optimizer" in str(x.message)]
    assert len(lines) == (0 if added else 1)
    assert added or "0.weight" in lines[0]


def test_a_compiled_models_warning_names_graddoctor_watch_and_the_users_line():
    model = torch.compile(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        w = gd.watch(model, opt).attach()
        w.detach()
    ours = [x for x in seen if "torch.compile'd model" in str(x.message)]
    assert ours and str(ours[0].message).startswith("graddoctor.watch: ")
    assert ours[0].filename == __file__
