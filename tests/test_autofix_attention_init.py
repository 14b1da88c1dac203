"""Autofix's init audit reads check's attention rule (fix/autofix/initaudit.py, ``ACT_ENTROPY``):
a Transformer drawn so large that its attention is one-hot at init (Hugging Face Llama at
``initializer_range=1.0``: loss 20.8 at step 1 and still 6.0 after 200 steps, over ln V = 4.85,
with no finding from watch) is re-drawn with ``small-init`` at the first check. Controls: the
same model at 0.02 (stock) and at 0.2, where check warns but the init trains (a tiny Phi trains
better at 0.2 than at 0.02), get no action."""

from __future__ import annotations

import warnings

import pytest
import torch

import graddoctor as gd
from graddoctor.fix.autofix.initaudit import ACT_ENTROPY, init_fault

V = 64


def _llama(initializer_range: float):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=4, intermediate_size=128, max_position_embeddings=32,
                                        initializer_range=initializer_range))


def _batch(g: torch.Generator) -> dict:
    start, stride = torch.randint(3, V, (16, 1), generator=g), torch.randint(1, 4, (16, 1), generator=g)
    x = (start + stride * torch.arange(16)) % (V - 3) + 3  # arithmetic sequences: learnable
    return {"input_ids": x, "labels": x.clone()}


def _train(model, steps: int, autofix: bool) -> tuple[list[float], list[dict]]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g, losses = torch.Generator().manual_seed(123), []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(model, opt, autofix=autofix) as w:
            for _ in range(steps):
                loss = model(**_batch(g)).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
                losses.append(loss.item())
    return losses, getattr(w, "fixes", [])


def test_llama_drawn_at_one_gets_small_init_at_the_first_check():
    losses, fixes = _train(_llama(1.0), 150, autofix=True)
    assert fixes and fixes[0]["step"] == 10 and fixes[0]["codes"] == ["poor-init"], fixes
    assert fixes[0]["remedies"] == ["small-init"], fixes
    plain, none = _train(_llama(1.0), 150, autofix=False)
    assert not none
    end, end_plain = sum(losses[-10:]) / 10, sum(plain[-10:]) / 10
    assert end < 0.5 * end_plain and end < 2.0, (end, end_plain)  # the broken run stays above ln V


@pytest.mark.parametrize("r", [0.02, 0.2])
def test_stock_and_moderately_large_inits_are_left_alone(r):
    model = _llama(r)
    x = _batch(torch.Generator().manual_seed(0))
    assert init_fault(model, x) == []
    if r == 0.2:  # check still warns about it: the audit acts only on a near one-hot attention
        (f,) = [f for f in gd.check(model, x).findings if f.code == "poor-init"]
        assert f.evidence["attention_entropy_median"] >= ACT_ENTROPY
    _, fixes = _train(model, 40, autofix=True)
    assert fixes == []


def test_small_init_reaches_gpt2_conv1d_and_every_embedding_table():
    # HF GPT-2's Conv1D layers (weight (in, out)) and OPT's learned position table were left at the
    # broken scale: GPT-2 at 1.0 ended at 4.92 after the fix (stock 1.72), OPT at 4.84 (stock 1.58)
    from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

    from graddoctor.diagnose.checktime.attention import weight_scale
    from graddoctor.fix.remedies.init import reinit

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=32,
                                      initializer_range=1.0))
    assert weight_scale(gpt2)[1] >= 9  # the Conv1D layers are read (9: lm_head and 8 Conv1D)
    new, change = reinit(gpt2, "small-init", _batch(torch.Generator().manual_seed(0)))
    c_fc = new.transformer.h[0].mlp.c_fc.weight  # Conv1D (64 in, 256 out): fan_in 64
    assert abs(float(c_fc.std()) - (2 / (5 * 64)) ** 0.5) < 0.01, float(c_fc.std())
    assert float(new.transformer.wpe.weight.std()) < 0.1 and "transformer.wpe" in change.modules
    torch.manual_seed(0)
    opt = OPTForCausalLM(OPTConfig(vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   ffn_dim=128, max_position_embeddings=32, word_embed_proj_dim=64, init_std=1.0,
                                   pad_token_id=1))
    new, _ = reinit(opt, "small-init", _batch(torch.Generator().manual_seed(0)))
    pos, tok = new.model.decoder.embed_positions.weight, new.model.decoder.embed_tokens.weight
    assert float(pos.std()) < 0.1 and float(tok.std()) < 0.1
    assert torch.all(tok[1] == 0)  # the padding row stays 0


def test_a_first_forward_mixing_positional_and_keyword_arguments_is_audited():
    # model(ids, labels=ids): the call is bound to forward's parameters (input_ids=, labels=); the
    # audit used to skip it silently (Llama at 1.0 then ended at 8.98)
    model = _llama(1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(model, opt, autofix=True) as w:
            for _ in range(12):
                ids = _batch(g)["input_ids"]
                loss = model(ids, labels=ids).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    assert w.fixes and w.fixes[0]["remedies"] == ["small-init"], w.fixes
    assert not [c for c in caught if "mixes positional" in str(c.message)]


def test_a_transformer_drawn_large_everywhere_gets_the_whole_model_small_init():
    # T5 at initializer_factor 50: the static chain rule names 8 of its 33 layers (He re-draw, a loss
    # that stayed at 6900); the one-hot attention says the whole model is off scale
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                             initializer_factor=50.0, decoder_start_token_id=0))
    x = {"input_ids": torch.randint(3, V, (4, 8)), "labels": torch.randint(3, V, (4, 8))}
    (f,) = init_fault(t5, x)
    assert f.remedies[0] == "small-init" and f.evidence["attention_entropy_median"] < ACT_ENTROPY


def test_small_init_leaves_narrow_tables_and_lsuv_handles_conv1d():
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from graddoctor.fix.remedies.init import reinit

    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                             decoder_start_token_id=0))
    rel = t5.encoder.block[0].layer[0].SelfAttention.relative_attention_bias
    before = rel.weight.detach().clone()
    new, change = reinit(t5, "small-init", {"input_ids": torch.randint(3, V, (2, 8)),
                                            "labels": torch.randint(3, V, (2, 8))})
    rel_new = new.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
    assert torch.equal(rel_new, before) and "shared" in change.modules  # (buckets, heads): not an input table
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=4, n_positions=32))
    reinit(gpt2, "lsuv-init", {"input_ids": torch.randint(3, V, (2, 8))})  # Conv1D's bias on the last axis

