"""``check``'s attention rule: ``poor-init`` when the attention is nearly one-hot on fresh weights.

Triggers: Hugging Face BERT at ``initializer_range`` 0.2 and GPT-2 at 0.5 (neither learns:
``diagnose/checktime/attention.py``), ``nn.TransformerEncoder`` with every matrix drawn N(0, 1).
Controls: the same models at their default init, T5 (no logit scale), trained weights.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime import attention

transformers = pytest.importorskip("transformers")


def _attention_findings(report):
    return [f for f in report.findings if "attention_entropy_median" in f.evidence]


def _bert(r):
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=50, initializer_range=r)
    return transformers.BertForSequenceClassification(cfg)


def _gpt2(r):
    cfg = transformers.GPT2Config(n_embd=64, n_layer=4, n_head=4, vocab_size=50, n_positions=64,
                                  initializer_range=r)
    return transformers.GPT2LMHeadModel(cfg)


IDS = torch.randint(3, 50, (8, 16), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("build, r, fires", [(_bert, 0.02, False), (_bert, 0.2, True),
                                             (_gpt2, 0.02, False), (_gpt2, 0.5, True)])
def test_hf_models_too_large_an_init_is_named(build, r, fires):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = gd.check(build(r), {"input_ids": IDS})
    found = _attention_findings(report)
    assert bool(found) == fires, [(f.code, f.message) for f in report.findings]
    assert len(report.data["attention"]) == 4
    if fires:
        f = found[0]
        assert f.code == "poor-init" and f.severity == "warning"
        assert f.remedies[0] == "small-init"
        assert f.evidence["attention_entropy_median"] < attention.SATURATED_ENTROPY
    else:
        assert min(s["entropy"] for s in report.data["attention"]) > 0.95


def test_t5_which_does_not_scale_its_logits_is_quiet():
    torch.manual_seed(0)
    cfg = transformers.T5Config(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, vocab_size=50,
                                decoder_start_token_id=0, pad_token_id=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = gd.check(transformers.T5ForConditionalGeneration(cfg), {"input_ids": IDS, "labels": IDS})
    assert not _attention_findings(report)
    assert len(report.data["attention"]) == 6  # encoder self, decoder self + cross, 2 layers


def _torch_encoder(std=None):
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                enable_nested_tensor=False)
    if std is not None:
        with torch.no_grad():
            for p in enc.parameters():
                if p.dim() > 1:
                    p.normal_(0.0, std)
    return enc


def test_torch_encoder_drawn_at_std_1_fires_and_its_default_does_not():
    x = torch.randn(4, 16, 32)
    assert not _attention_findings(gd.check(_torch_encoder(), x))
    (f,) = _attention_findings(gd.check(_torch_encoder(1.0), x))
    assert f.evidence["attention_entropy_median"] < 0.1
    assert f.layers == ["layers.0.self_attn", "layers.1.self_attn"]


def test_trained_weights_are_left_alone(monkeypatch):
    monkeypatch.setattr(attention, "looks_trained", lambda model: True)  # a checkpoint's attention is peaked on purpose
    assert not _attention_findings(gd.check(_torch_encoder(1.0), torch.randn(4, 16, 32)))


def test_repair_draws_the_small_init_and_the_attention_spreads():
    torch.manual_seed(0)
    model, inputs = _bert(0.5), {"input_ids": IDS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = gd.check(model, inputs)
        result = gd.repair(model, report, example_inputs=inputs)
        after = gd.check(result.model, inputs)
    assert "small-init" in [c.remedy for c in result.changes if c.kind == "applied"]
    assert not _attention_findings(after)
    assert min(s["entropy"] for s in after.data["attention"]) > 0.95
    q = result.model.bert.encoder.layer[0].attention.self.query.weight
    assert q.std().item() == pytest.approx((2 / (5 * 64)) ** 0.5, rel=0.1)
