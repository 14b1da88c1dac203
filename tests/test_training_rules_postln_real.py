"""post-ln-no-warmup on real runs: a post-LN Transformer trained with Adam 1e-2 from step 1
gets stuck at chance on digit rows; its pre-LN twin and its warm-up twin (same budget) learn.

Measured (one torch thread, 6 blocks, d=32, batch 32, 60 steps, ~2 s a run; seeds 0, 1, 2):
final loss (median of the last 10 steps) post-LN no warm-up, zoo 2.385 / 2.335 / 2.340 and
nn.TransformerEncoder 2.347 / 2.305 / 2.314 (chance ln 10 = 2.303), all flagged; pre-LN twins
zoo 1.395 / 1.183 / 1.331 and nn.TransformerEncoder 1.454 / 1.157 / 1.480, none flagged;
zoo post-LN with a 30-step linear warm-up 1.651 / 1.084 / 1.177, not flagged.
nn.TransformerEncoder at d=64: post-LN 2.336 / 2.314 / 2.329, all flagged; pre-LN 1.388 / 1.354 /
1.532, none flagged. At d=64 seed 0 the loss falls from 2.638 to chance within the first 20 steps
(level / start 0.894 < ``STUCK_FRAC``), so it is the ``flat_after_settling`` path that flags it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.diagnose.training.postln import flat_after_settling
from graddoctor.train import fit, sampled_batches

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "realistic"))
from runs import TorchTransformer  # noqa: E402  (the realistic suite's nn.TransformerEncoder model)

DEPTH, D_MODEL, LR, STEPS, BATCH = 6, 32, 1e-2, 60, 32


def _model(arch: str, norm: str, seed: int = 0, d: int = D_MODEL) -> nn.Module:
    torch.manual_seed(seed)
    if arch == "torch":
        return TorchTransformer(DEPTH, norm_first=norm == "pre", d=d)
    return zoo.transformer(depth=DEPTH, d_model=d, nhead=4, norm=norm, input_dim=8, num_classes=10,
                           max_len=16, seed=seed)


def _digit_rows() -> tuple[torch.Tensor, torch.Tensor]:
    b = data.load("digits", seed=0, flat=True)
    return b.x_train.float().view(-1, 8, 8), b.y_train


def _train(model: nn.Module, warmup: int = 0, seed: int = 0):
    """Adam at LR (ramped linearly over ``warmup`` steps when > 0) under ``gd.watch``:
    (report, steps records, final loss level)."""
    x, y = _digit_rows()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = (torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warmup)) if warmup else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with gd.watch(model, optimizer=opt, example_inputs=x[:BATCH]) as w:
            def on_step(step: int, loss: torch.Tensor) -> None:
                w.step(loss)
                if sched is not None:
                    sched.step()
            log = fit(model, opt, sampled_batches(x, y, BATCH, seed=seed), steps=STEPS, on_step=on_step)
            report = w.report()
            steps = w.records()[1]
    finally:
        torch.set_num_threads(threads)
    losses = torch.tensor(log.losses[-10:])
    return report, steps, float(losses.median())


def _post_ln(report) -> list:
    return [f for f in report.findings if f.code == "post-ln-no-warmup"]


@pytest.mark.slow
@pytest.mark.parametrize("arch,d", [("zoo", 32), ("torch", 32), ("torch", 64)])
def test_post_ln_without_warmup_stuck_at_chance_is_flagged_and_its_pre_ln_twin_is_not(arch, d):
    # the real behaviour first: the first seed whose post-LN run sits at chance (floating-point
    # differences between CPUs decide which seeds escape: on one machine zoo d=32 seed 0
    # ended at 2.013, not flagged, while seeds 1 and 2 sat at 2.305 / 2.264, flagged)
    for seed in (0, 1, 2):
        stuck, stuck_steps, stuck_loss = _train(_model(arch, "post", seed=seed, d=d), seed=seed)
        if stuck_loss > 2.2:
            break
        assert _post_ln(stuck) == [], (seed, stuck_loss, str(stuck))  # it learned: no finding
    assert stuck_loss > 2.2, stuck_loss
    twin, twin_steps, twin_loss = _train(_model(arch, "pre", seed=seed, d=d), seed=seed)
    assert twin_loss < 1.7, twin_loss  # the pre-LN twin learns
    # flat after its first fall to the class prior, which the learning twin is not
    assert flat_after_settling(stuck_steps) and not flat_after_settling(twin_steps)
    (f,) = _post_ln(stuck)
    assert f.severity == "error" and f.remedies == ["warmup", "prenorm"]
    assert f.evidence["post_ln_blocks"] == DEPTH == f.evidence["blocks"] and len(f.layers) == DEPTH
    assert not stuck.ok
    assert _post_ln(twin) == [] and twin.ok, str(twin)


@pytest.mark.slow
def test_post_ln_with_a_warmup_learns_and_is_not_flagged():
    report, _, loss = _train(_model("zoo", "post"), warmup=30)
    assert loss < 1.9, loss
    assert _post_ln(report) == [] and report.ok, str(report)
