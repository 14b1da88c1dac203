"""``exploding-gradient`` when the loss jumps far above its start and stays there (``diverged``).

Trial (new users, Hugging Face decoders): GPT-NeoX, Phi and Falcon at AdamW 1.0 went from 3.47 to
40-200 and sat there with no finding; autofix did nothing. Now: an error, and autofix rolls back
with the rate cut. Controls: a healthy run, a loss that rises under small steps (a GAN's
generator), a negative objective.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import graddoctor as gd
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.instability import diverged

transformers = pytest.importorskip("transformers")

META = {"layers": [{"name": "a", "kind": "linear"}, {"name": "b", "kind": "linear"}], "activations": []}


def _steps(loss, ratio=0.3):
    return [{"step": t, "loss": loss(t), "update_ratio": {"a": ratio, "b": ratio}} for t in range(1, 61)]


def test_a_jump_that_stays_is_an_error_and_a_recovery_small_steps_or_negative_losses_are_not():
    up = _steps(lambda t: 3.5 if t == 1 else 60.0 + (t % 5))
    (f,) = [f for f in training_findings(META, up) if "loss_ratio" in f.evidence]
    assert f.code == "exploding-gradient" and f.severity == "error" and f.step == 2
    assert f.remedies[0] == "lower-lr"
    assert diverged(META, _steps(lambda t: 3.5 if t == 1 or t > 30 else 60.0)) is None  # came back down
    assert diverged(META, _steps(lambda t: 0.7 + t / 10, ratio=1e-3)) is None  # rises under ~1e-3 steps
    assert diverged(META, _steps(lambda t: -1.0 if t == 1 else 5.0)) is None  # not a loss bounded below by 0
    assert diverged(META, _steps(lambda t: 2.3 / t ** 0.5)) is None  # healthy


def _neox_batches(seed):
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randint(3, 32, (32, 6), generator=g)
        ids = torch.cat([torch.full((32, 1), 1), x, torch.full((32, 1), 2), x], 1)
        labels = ids.clone()
        labels[:, :8] = -100
        yield {"input_ids": ids, "labels": labels}


@pytest.mark.parametrize("autofix", [False, True])
def test_gpt_neox_at_adamw_1_is_named_and_autofix_cuts_the_rate(autofix):
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(vocab_size=32, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=64)
    model = transformers.GPTNeoXForCausalLM(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0, weight_decay=0.01)
    batches = _neox_batches(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = gd.watch(model, opt, autofix=autofix)
        for _ in range(40):
            loss = model(**next(batches)).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
        w.detach()
    if autofix:
        assert w.fixes and w.fixes[0]["codes"] == ["exploding-gradient"]
        assert "lower-lr" in w.fixes[0]["remedies"] and opt.param_groups[0]["lr"] <= 0.01
    else:
        found = [f for f in w.report().findings if "loss_ratio" in f.evidence]
        assert found and found[0].evidence["loss_ratio"] > 3.0
