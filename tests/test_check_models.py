"""gd.check on third-party models: Hugging Face GPT-2 and BERT from small configs, nn.TransformerEncoder.

Each must be checked without error and without a (false) vanishing/exploding finding.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import graddoctor as gd

GRADIENT_CODES = {"vanishing-gradient", "exploding-gradient", "signal-collapse", "signal-explosion"}
transformers = pytest.importorskip("transformers")


def _ids(vocab: int = 100, shape=(4, 16)) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(0))


def _assert_sane(report: gd.Report, n_layers: int) -> None:
    assert not (report.codes & GRADIENT_CODES), str(report)
    assert report.ok, str(report)
    probe = report.data["probe"]
    assert len(probe["layers"]) >= n_layers and all(g > 0 for g in probe["grad_rms"])


@pytest.fixture(autouse=True)
def _quiet():
    transformers.logging.set_verbosity_error()


def test_hf_gpt2_own_loss_and_projection():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=4, n_embd=64, n_head=4, vocab_size=100, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = _ids()
    r = gd.check(model, {"input_ids": ids, "labels": ids})
    assert r.data["probe"]["loss_source"] == "model"
    _assert_sane(r, 4 * 4)
    # the tanh-approximated GELU is a GELU: no saturating-hidden-activation
    assert "saturating-hidden-activation" not in r.codes
    # through time is measured (the last position carries no loss: exactly 0) but not judged
    tg = r.data["probe"]["time_grad"]
    assert len(tg) == 16 and tg[-1] == 0.0 and min(tg[:-1]) > 0
    r2 = gd.check(model, {"input_ids": ids})
    assert r2.data["probe"]["loss_source"] == "projection"
    _assert_sane(r2, 16)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("head", ["BertForMaskedLM", "BertForSequenceClassification"])
def test_hf_bert(head: str):
    torch.manual_seed(0)
    cfg = transformers.BertConfig(num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                                  intermediate_size=128, vocab_size=100, max_position_embeddings=32)
    model = getattr(transformers, head)(cfg)
    ids = _ids()
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if head == "BertForMaskedLM":
        inputs["labels"] = ids
    r = gd.check(model, inputs)
    _assert_sane(r, 4 * 6)
    # the pooler's tanh before the classifier is reported, at most as info
    assert all(f.severity == "info" for f in r.by_code("saturating-hidden-activation"))


@pytest.mark.parametrize("norm_first,batch_first", [(False, True), (True, False)])
def test_torch_transformer_encoder(norm_first: bool, batch_first: bool):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=batch_first, norm_first=norm_first)
    enc = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    x = torch.randn(4, 16, 64) if batch_first else torch.randn(16, 4, 64)
    r = gd.check(enc, x)
    _assert_sane(r, 6 * 3)
    assert r.data["probe"]["time_axis"] == (1 if batch_first else 0)
    assert len(r.data["probe"]["time_grad"]) == 16
    assert enc.training  # mode restored
