"""A healthy tiny BERT at AdamW 5e-5 (Hugging Face's default rate) with no warm-up: its loss is
flat for 120 steps because its steps are small (0.25% of the weights), not because a gradient
vanishes or the post-LN blocks collapsed.

Before: an **error** ``loss-plateau`` saying "the input-side gradients vanish" (the pooler and
classifier sit 2 orders above a flat encoder: a head step, which ``vanishing-gradient`` itself
already excepted), and autofix applied ``post-ln-no-warmup`` -> rollback + warm-up + a 3x lower
rate at step 70. Now at most a plateau warning that names the rate, and no action.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import graddoctor as gd

transformers = pytest.importorskip("transformers")


def _bert_run(lr: float, autofix: bool, steps: int = 120):
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32, num_labels=2)
    model = transformers.BertForSequenceClassification(cfg)
    ids = torch.randint(0, 100, (512, 16))
    labels = (ids[:, 0] > 50).long()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, opt, example_inputs={"input_ids": ids[:16], "labels": labels[:16]},
                      autofix=autofix) as w:
            for _ in range(steps):
                i = torch.randint(0, 512, (16,), generator=g)
                loss = model(input_ids=ids[i], labels=labels[i]).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    return w


@pytest.mark.slow
def test_a_bert_at_the_default_small_rate_gets_no_error_and_no_autofix_action():
    w = _bert_run(5e-5, autofix=True)
    report = w.report()
    assert w.fixes == [] and report.ok, str(report)
    for f in report.by_code("loss-plateau"):
        assert f.severity == "warning" and f.evidence["gradient_evidence"] is None
        assert f.remedies == ["lr-find"]
    assert "post-ln-no-warmup" not in report.codes
