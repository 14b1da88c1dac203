"""The instability paths of exploding-gradient (issue 14, training half) on real training runs: steps
too large for the weights (a learning rate 5-10x too high that does not diverge), loss spikes that
need large steps (not a converged fine-tune's heavy-tailed losses), and the post-LN rule's "stuck
after the first fall to the class prior"."""

from __future__ import annotations

import torch

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.instability import (
    SPIKE_MIN_UPDATE,
    UPDATE_TOO_BIG,
    loss_spikes,
    median_update_ratios,
    oversized_updates,
)
from graddoctor.diagnose.training.postln import flat_after_settling
from graddoctor.fix.planner import plan
from graddoctor.train import fit, sampled_batches


def _xy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=g)
    return x, x[:, :4].argmax(1)


def _mlp():
    return zoo.mlp(depth=4, width=32, in_features=16, out_features=4, init="he", seed=0)


def _watch(model, opt, steps=60, seed=0):
    x, y = _xy()
    with gd.watch(model, optimizer=opt, example_inputs=x[:32]) as w:
        log = fit(model, opt, sampled_batches(x, y, 32, seed=seed), steps=steps,
                  on_step=lambda s, loss: w.step(loss))
        return w.records(), log


def _sgd(model, lr):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_learning_rate_5x_too_high_is_exploding_by_its_update_size_and_its_twin_is_not():
    net = _mlp()
    (meta, steps), log = _watch(net, _sgd(net, 0.25))
    assert all(v == v for v in log.losses)  # no NaN: the blow-up path cannot see it
    f = oversized_updates(meta, steps)
    assert f is not None and f.code == "exploding-gradient"
    assert f.evidence["median_update_ratio"] >= UPDATE_TOO_BIG and f.remedies[0] == "lower-lr"
    found = {g.code: g for g in training_findings(meta, steps)}
    assert "exploding-gradient" in found
    assert "clip-norm" in [s.remedy for s in plan(list(found.values()), net, _xy()[0][:32])]
    twin = _mlp()
    (tmeta, tsteps), tlog = _watch(twin, _sgd(twin, 0.05))
    assert tlog.losses[-1] < log.losses[-1]  # the twin learns better: the fault does harm
    assert oversized_updates(tmeta, tsteps) is None
    assert float(max(median_update_ratios(tmeta, tsteps)[1])) < UPDATE_TOO_BIG
    assert not training_findings(tmeta, tsteps)


def test_update_threshold_sits_between_the_healthy_sgd_peak_and_a_missed_10x_fault():
    """The autofix benchmark's b-cnn1d-lr10x seed 0 (SGD at 10x, harmful) read 0.044 then 0.037 on
    its first two samples and was missed at a threshold of 0.04; healthy SGD runs peak at 0.025."""
    meta = {"layers": [{"name": n, "kind": "linear"} for n in "abc"], "config": {"optimizer": "SGD"}}

    def run(ratios):
        return [{"step": t, "update_ratio": dict.fromkeys("abc", r)} for t, r in zip((4, 8, 16, 32), ratios)]
    assert oversized_updates(meta, run([0.044, 0.037, 0.034, 0.018])) is not None
    assert oversized_updates(meta, run([0.025, 0.025, 0.023, 0.02])) is None
    assert oversized_updates(meta, run([0.044, 0.02, 0.037, 0.02])) is None  # never two in a row


def _bn_resnet(seed=0):
    return zoo.cnn(depth=8, kind="resnet", in_channels=1, num_classes=10, width=16, seed=seed)


def _digits_img():
    from graddoctor import data
    b = data.load("digits", seed=0)
    return b.x_train.view(-1, 1, 8, 8), b.y_train


def _watch_sgd(model, lr, steps, onecycle):
    x, y = _digits_img()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps) if onecycle else None
    with gd.watch(model, optimizer=opt, example_inputs=x[:32]) as w:
        def on_step(s, loss):
            if sched is not None:
                sched.step()
            w.step(loss)
        fit(model, opt, sampled_batches(x, y, 32, seed=0), steps=steps, on_step=on_step)
        return w.records()


def test_a_one_cycle_ramp_is_no_learning_rate_fault_but_the_same_peak_held_is():
    """Trial 17: a healthy BatchNorm ResNet under OneCycleLR (SGD, peak 0.4: super-convergence)
    read 5.2% updates at step 40, on the ramp, and was called a rate far too high (autofix cut it
    10x). Samples on a rising schedule are not read; the peak held from step 1 still is."""
    meta, steps = _watch_sgd(_bn_resnet(), 0.4, 100, onecycle=True)
    ids, med = median_update_ratios(meta, steps)
    assert any(m >= UPDATE_TOO_BIG for t, m in zip(ids, med) if t >= 4)  # large steps on the ramp
    assert oversized_updates(meta, steps) is None
    assert "exploding-gradient" not in {f.code for f in training_findings(meta, steps)}
    cmeta, csteps = _watch_sgd(_bn_resnet(), 0.4, 40, onecycle=False)
    assert oversized_updates(cmeta, csteps) is not None


def test_a_converged_fine_tune_has_no_exploding_finding():
    net = _mlp()
    opt = _sgd(net, 0.05)
    x, y = _xy()
    fit(net, opt, sampled_batches(x, y, 32, seed=1), steps=400)  # pretrain, unwatched
    (meta, steps), log = _watch(net, opt, steps=100)
    assert max(median_update_ratios(meta, steps)[1]) < SPIKE_MIN_UPDATE  # small steps: no overshoot
    assert loss_spikes(meta, steps) is None
    assert not [f for f in training_findings(meta, steps) if f.severity in ("error", "warning")]


def test_loss_spikes_need_large_steps():
    meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(4)]}
    loss = [0.01 if t % 3 else 0.05 for t in range(60)]  # a converged run's heavy-tailed losses

    def steps(ratio):
        return [{"step": t + 1, "loss": v, "update_ratio": {str(i): ratio for i in range(4)} if t % 10 == 0
                 else None} for t, v in enumerate(loss)]
    assert loss_spikes(meta, steps(1e-3)) is None
    assert loss_spikes(meta, steps(0.05)) is not None


def test_post_ln_stuck_after_falling_to_chance_counts_as_stuck():
    above_chance_then_flat = [{"step": t, "loss": 2.3 + 0.35 * max(0.0, 1 - t / 20)} for t in range(1, 101)]
    slow_but_learning = [{"step": t, "loss": 2.3 if t < 30 else 2.3 * 0.98 ** (t - 30)} for t in range(1, 101)]
    assert flat_after_settling(above_chance_then_flat)
    assert not flat_after_settling(slow_but_learning)
