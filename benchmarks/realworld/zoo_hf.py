"""Hugging Face ``transformers`` models built from tiny configs (no weights are downloaded).

Each entry returns ``(model, example_inputs)``; token models get ``labels`` so the model's own
loss is probed (one also with ``return_dict=False``: a tuple output whose first item is the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

VOCAB, T, B = 128, 16, 4


def _ids(shape=(B, T)) -> torch.Tensor:
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(0))


def _tf():
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers


def _lm(cls: str, cfg: str, **kw: Any) -> tuple[Any, Any]:
    tf = _tf()
    model = getattr(tf, cls)(getattr(tf, cfg)(vocab_size=VOCAB, **kw))
    ids = _ids()
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _llama_kw() -> dict:
    return dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64)


def gpt2():
    return _lm("GPT2LMHeadModel", "GPT2Config", n_layer=4, n_embd=64, n_head=4, n_positions=64)


def gpt2_tuple():
    """GPT-2 with ``return_dict=False``: the output is a tuple ``(loss, logits, past)``."""
    model, x = gpt2()
    return model, {**x, "return_dict": False}


def _bert_kw() -> dict:
    return dict(num_hidden_layers=4, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                max_position_embeddings=64)


def bert_mlm():
    return _lm("BertForMaskedLM", "BertConfig", **_bert_kw())


def bert_cls():
    tf = _tf()
    model = tf.BertForSequenceClassification(tf.BertConfig(vocab_size=VOCAB, num_labels=3, **_bert_kw()))
    ids = _ids()
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 2, 0])}


def roberta():
    return _lm("RobertaForMaskedLM", "RobertaConfig", pad_token_id=1, **_bert_kw())


def distilbert():
    tf = _tf()
    cfg = tf.DistilBertConfig(vocab_size=VOCAB, n_layers=4, dim=64, n_heads=4, hidden_dim=128,
                              max_position_embeddings=64)
    ids = _ids()
    return tf.DistilBertForMaskedLM(cfg), {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def electra():
    return _lm("ElectraForMaskedLM", "ElectraConfig", embedding_size=32, **_bert_kw())


def albert():
    return _lm("AlbertForMaskedLM", "AlbertConfig", embedding_size=32, **_bert_kw())


def llama():
    return _lm("LlamaForCausalLM", "LlamaConfig", **_llama_kw())


def mistral():
    return _lm("MistralForCausalLM", "MistralConfig", **_llama_kw())


def qwen2():
    return _lm("Qwen2ForCausalLM", "Qwen2Config", **_llama_kw())


def gemma():
    kw = {**_llama_kw(), "head_dim": 16}
    return _lm("GemmaForCausalLM", "GemmaConfig", **kw)


def opt():
    return _lm("OPTForCausalLM", "OPTConfig", hidden_size=64, ffn_dim=128, num_hidden_layers=4,
               num_attention_heads=4, word_embed_proj_dim=64, max_position_embeddings=64)


def gpt_neox():
    return _lm("GPTNeoXForCausalLM", "GPTNeoXConfig", hidden_size=64, intermediate_size=128,
               num_hidden_layers=4, num_attention_heads=4, max_position_embeddings=64)


def _seq2seq(cls: str, cfg: str, **kw: Any):
    tf = _tf()
    model = getattr(tf, cls)(getattr(tf, cfg)(vocab_size=VOCAB, **kw))
    ids = _ids()
    return model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": _ids((B, 8))}


def t5():
    return _seq2seq("T5ForConditionalGeneration", "T5Config", d_model=64, d_ff=128, d_kv=16, num_layers=3,
                    num_decoder_layers=3, num_heads=4, decoder_start_token_id=0, pad_token_id=0)


def bart():
    return _seq2seq("BartForConditionalGeneration", "BartConfig", d_model=64, encoder_layers=3, decoder_layers=3,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                    decoder_ffn_dim=128, max_position_embeddings=64)


def whisper():
    tf = _tf()
    cfg = tf.WhisperConfig(vocab_size=VOCAB, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=32, max_target_positions=32,
                           decoder_start_token_id=1, pad_token_id=0)
    feats = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(0))
    return tf.WhisperForConditionalGeneration(cfg), {"input_features": feats, "labels": _ids((2, 8))}


def _image(shape=(B, 3, 32, 32)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(0))


def vit():
    tf = _tf()
    cfg = tf.ViTConfig(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4, num_attention_heads=4,
                       intermediate_size=128, num_labels=10)
    return tf.ViTForImageClassification(cfg), {"pixel_values": _image(), "labels": torch.tensor([0, 1, 2, 3])}


def hf_convnext():
    tf = _tf()
    cfg = tf.ConvNextConfig(hidden_sizes=[16, 32, 64, 128], depths=[2, 2, 2, 2], num_labels=10)
    return tf.ConvNextForImageClassification(cfg), {"pixel_values": _image((B, 3, 64, 64)),
                                                     "labels": torch.tensor([0, 1, 2, 3])}


def hf_resnet():
    tf = _tf()
    cfg = tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 2, 1],
                          layer_type="bottleneck", num_labels=10)
    return tf.ResNetForImageClassification(cfg), {"pixel_values": _image((8, 3, 64, 64)),
                                                  "labels": torch.arange(8) % 10}


def hf_swin():
    tf = _tf()
    cfg = tf.SwinConfig(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                        window_size=4, num_labels=10)
    return tf.SwinForImageClassification(cfg), {"pixel_values": _image(), "labels": torch.tensor([0, 1, 2, 3])}


def clip():
    """``CLIPModel`` holds ``logit_scale`` at its root; ``return_loss=True`` gives the contrastive loss."""
    tf = _tf()
    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=T)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2)
    cfg = tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)
    ids = _ids()
    return tf.CLIPModel(cfg), {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                               "pixel_values": _image(), "return_loss": True}


HF_MODELS: dict[str, tuple[str, Callable]] = {
    "gpt2": ("hf-decoder", gpt2), "gpt2-tuple-output": ("hf-decoder", gpt2_tuple),
    "bert-mlm": ("hf-encoder", bert_mlm), "bert-cls": ("hf-encoder", bert_cls),
    "roberta": ("hf-encoder", roberta), "distilbert": ("hf-encoder", distilbert),
    "electra": ("hf-encoder", electra), "albert": ("hf-encoder", albert),
    "llama": ("hf-decoder", llama), "mistral": ("hf-decoder", mistral), "qwen2": ("hf-decoder", qwen2),
    "gemma": ("hf-decoder", gemma), "opt": ("hf-decoder", opt), "gpt-neox": ("hf-decoder", gpt_neox),
    "t5": ("hf-seq2seq", t5), "bart": ("hf-seq2seq", bart), "whisper": ("hf-seq2seq", whisper),
    "vit": ("hf-vision", vit), "hf-convnext": ("hf-vision", hf_convnext), "hf-resnet": ("hf-vision", hf_resnet),
    "hf-swin": ("hf-vision", hf_swin), "clip": ("hf-multimodal", clip),
}
