"""``measure.probe_softmax.attention_entropy`` against plain computations of the same entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graddoctor.measure.probe_softmax import attention_entropy


def _entropy(p: torch.Tensor, allow: torch.Tensor) -> float:
    """Mean over rows with >= 4 allowed keys of H(p) / ln(allowed keys): the oracle."""
    n = allow.expand_as(p).sum(-1).float()
    h = -(p * torch.log(p.clamp_min(1e-30))).sum(-1)
    ok = n >= 4
    return float((h[ok] / torch.log(n[ok])).clamp(0, 1).mean())


class MHA(nn.Module):
    def __init__(self, d: int = 16, heads: int = 4, scale: float = 1.0) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(d, heads, batch_first=True)
        with torch.no_grad():
            self.att.in_proj_weight.mul_(scale)

    def forward(self, x, mask=None, pad=None):
        return self.att(x, x, x, attn_mask=mask, key_padding_mask=pad, need_weights=False)[0]


@pytest.mark.parametrize("scale", [1.0, 6.0])
def test_multihead_attention_matches_its_own_weights(scale):
    torch.manual_seed(0)
    net, x = MHA(scale=scale), torch.randn(3, 10, 16)
    pad = torch.zeros(3, 10, dtype=torch.bool)
    pad[0, 7:] = True  # padded keys of the first sequence are masked out
    causal = torch.ones(10, 10, dtype=torch.bool).triu(1)  # True: masked (nn.MultiheadAttention's sense)
    (site,) = attention_entropy(net, (x, causal, pad))
    with torch.no_grad():
        p = net.att(x, x, x, attn_mask=causal, key_padding_mask=pad, need_weights=True,
                    average_attn_weights=False)[1]
    allow = (~causal)[None, None] & (~pad)[:, None, None, :]
    assert site.name == "att" and site.keys == 10
    assert site.entropy == pytest.approx(_entropy(p, allow), abs=1e-4)


def test_sdpa_causal_and_float_mask_match_a_plain_softmax():
    torch.manual_seed(1)
    q, k = torch.randn(2, 4, 12, 8) * 3, torch.randn(2, 4, 12, 8) * 3
    bias = torch.zeros(12, 12)
    bias[:, :2] = torch.finfo(torch.float32).min  # HF-style float mask: the first 2 keys masked

    class Causal(nn.Module):
        def forward(self, q, k):
            return F.scaled_dot_product_attention(q, k, k, is_causal=True)

    class Masked(nn.Module):
        def forward(self, q, k):
            return F.scaled_dot_product_attention(q, k, k, attn_mask=bias)

    logits = q @ k.transpose(-1, -2) / math.sqrt(8)
    tril = torch.ones(12, 12, dtype=torch.bool).tril()
    want_causal = _entropy(torch.softmax(logits.masked_fill(~tril, float("-inf")), -1), tril)
    allow = bias > -5e3
    want_masked = _entropy(torch.softmax(logits + bias, -1), allow)
    assert attention_entropy(Causal(), (q, k))[0].entropy == pytest.approx(want_causal, abs=1e-4)
    assert attention_entropy(Masked(), (q, k))[0].entropy == pytest.approx(want_masked, abs=1e-4)


def test_a_four_axis_softmax_is_read_and_a_classifier_softmax_is_not():
    torch.manual_seed(2)

    class Eager(nn.Module):
        def forward(self, s):
            return torch.softmax(s, dim=-1)

    class Head(nn.Module):
        def forward(self, z):
            return F.softmax(z, dim=-1)  # [B, classes]: class probabilities, not attention

    s = torch.randn(2, 2, 6, 6) * 4
    (site,) = attention_entropy(Eager(), s)
    assert site.entropy == pytest.approx(_entropy(torch.softmax(s, -1), torch.ones(6, dtype=torch.bool)), abs=1e-4)
    assert attention_entropy(Head(), torch.randn(4, 10)) == []


def test_it_leaves_no_trace():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(10), nn.Dropout(0.5), MHA())
    x = torch.randn(3, 10, 16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    assert len(attention_entropy(model, x)) == 1
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BatchNorm stats too
    assert torch.equal(rng, torch.get_rng_state())  # dropout drew nothing from the user's stream
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_an_encoder_in_eval_mode_is_read_through_the_unfused_path():
    torch.manual_seed(4)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                enable_nested_tensor=False).eval()
    sites = attention_entropy(enc, torch.randn(2, 8, 32))
    assert [s.name for s in sites] == ["layers.0.self_attn", "layers.1.self_attn"]
    assert torch.backends.mha.get_fastpath_enabled()  # the switch is back on
