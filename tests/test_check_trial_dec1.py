"""gd.check on models a new-user trial tried (2026-12-01): what it got wrong, and the fix.

- a branch detached from the loss (``.detach()``, ``torch.no_grad()``) read "no findings":
  now ``no-gradient`` (a layer whose result is thrown away, or that feeds only an output the
  probe's loss does not read, is not reported);
- Gemma 2's attention-logit soft cap ``50 * tanh(x / 50)`` read as a saturating hidden activation;
- one zeroed RMSNorm gain before a SwiGLU MLP added a spurious 9.6-order ``signal-explosion`` error
  (the exactly-zero outputs of the layers it cuts off fitted as a trend);
- OLMo-2 (each branch's output normalised before the residual add, the stream starting at the
  embedding's 0.02 scale) got ``exploding-gradient`` (3.4 orders) and ``signal-explosion`` (2.6)
  warnings at its own init, also at 16 layers of width 1024: the gradient of a layer whose output
  only feeds a normalisation is 1/size of that output, so it is now read as dL/dy x rms(y).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.modelmap import ModelMap


def _codes(report) -> dict[str, str]:
    return {f.code: f.severity for f in report.findings}


# ---------------------------------------------------------------- detached branches


class _EncoderHead(nn.Module):
    def __init__(self, cut: str = "") -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, 4)
        self.pooler = nn.Linear(32, 32)  # computed, result thrown away (HF BigBird's pooler under an MLM head)
        self.aux = nn.Linear(32, 2)  # an output the probe's loss does not read
        self.cut = cut

    def forward(self, x):
        if self.cut == "no_grad":
            with torch.no_grad():
                f = self.enc(x)
        else:
            f = self.enc(x)
            f = f.detach() if self.cut == "detach" else f
        _ = self.pooler(f)
        return self.head(f), self.aux(f)


@pytest.mark.parametrize("cut", ["detach", "no_grad"])
def test_a_detached_encoder_is_no_gradient(cut):
    torch.manual_seed(0)
    x, y = torch.randn(16, 16), torch.randint(0, 4, (16,))
    report = gd.check(_EncoderHead(cut), x, target=y)
    (f,) = [f for f in report.findings if f.code == "no-gradient"]
    assert f.severity == "warning" and f.layers == ["enc.0", "enc.2"]
    assert "detach" in f.message and f.step == 0


def test_no_gradient_spares_a_thrown_away_layer_and_an_unread_output():
    torch.manual_seed(0)
    report = gd.check(_EncoderHead(), torch.randn(16, 16), target=torch.randint(0, 4, (16,)))
    assert "no-gradient" not in report.codes, report
    assert {"pooler", "aux"} <= set(report.data["probe"]["off_path"])  # off the probe's loss, not cut off


# ---------------------------------------------------------------- soft caps


class _CappedAttention(nn.Module):
    def __init__(self, d: int = 32, cap: float = 50.0) -> None:
        super().__init__()
        self.norm, self.qkv, self.o, self.cap = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d), cap

    def forward(self, h):
        q, k, v = self.qkv(self.norm(h)).chunk(3, -1)
        s = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
        s = torch.tanh(s / self.cap) * self.cap  # Gemma 2's attn_logit_softcapping
        return h + self.o(s.softmax(-1) @ v)


class _LeCunTanh(nn.Module):
    def forward(self, x):
        return 1.7159 * torch.tanh(x * (2 / 3))  # a scaled tanh: a hidden activation, no cap


def test_a_soft_cap_is_not_a_saturating_hidden_activation():
    torch.manual_seed(0)
    capped = nn.Sequential(nn.Linear(8, 32), *[_CappedAttention() for _ in range(3)], nn.Linear(32, 4))
    x = torch.randn(4, 6, 8)
    sites = [s for s in ModelMap(capped, x).activations if s.kind == "tanh"]
    assert len(sites) == 3 and all(s.capped for s in sites)
    assert "saturating-hidden-activation" not in gd.check(capped, x).codes
    lecun = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), _LeCunTanh())], nn.Linear(16, 2))
    assert not any(s.capped for s in ModelMap(lecun, torch.randn(8, 16)).activations)
    assert _codes(gd.check(lecun, torch.randn(8, 16)))["saturating-hidden-activation"] == "info"  # (tanh alone)


def test_gemma2_softcap_gets_no_finding():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                                    num_key_value_heads=1, head_dim=16, vocab_size=64)
    x = torch.randint(0, 64, (2, 12))
    report = gd.check(transformers.Gemma2ForCausalLM(cfg), {"input_ids": x, "labels": x})
    assert not [f for f in report.findings if f.severity != "info"], report


# ---------------------------------------------------------------- a zeroed norm gain


class _RMSNorm(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class _SwiGLU(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = _RMSNorm(d)
        self.gate, self.up, self.down = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False), \
            nn.Linear(2 * d, d, bias=False)

    def forward(self, x):
        h = self.norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def test_one_zeroed_rmsnorm_gain_is_vanishing_only_not_a_signal_explosion():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), *[_SwiGLU(32) for _ in range(4)], _RMSNorm(32), nn.Linear(32, 5))
    nn.init.zeros_(net[2].norm.weight)
    report = gd.check(net, torch.randn(8, 12, 16))
    assert _codes(report) == {"vanishing-gradient": "error"}, report  # was also signal-explosion (E, 9.6 orders)


# ---------------------------------------------------------------- normalised branches (OLMo-2)


class _PostNormBlock(nn.Module):
    """OLMo-2's block: each branch reads the raw stream and its output is normalised before the add."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.q_norm, self.k_norm, self.attn_norm, self.mlp_norm = (_RMSNorm(d) for _ in range(4))
        self.gate, self.up = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.down = nn.Linear(2 * d, d, bias=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)

    def forward(self, h):
        b, t, d = h.shape
        q, k, v = (z.view(b, t, 4, d // 4).transpose(1, 2) for z in (self.q_norm(self.q(h)), self.k_norm(self.k(h)),
                                                                   self.v(h)))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        h = h + self.attn_norm(self.o(a))
        return h + self.mlp_norm(self.down(F.silu(self.gate(h)) * self.up(h)))


class _PostNormLM(nn.Module):
    def __init__(self, d: int = 64, depth: int = 4, vocab: int = 100) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        nn.init.normal_(self.emb.weight, std=0.02)
        self.blocks = nn.Sequential(*[_PostNormBlock(d) for _ in range(depth)])
        self.norm, self.head = _RMSNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, ids):
        return self.head(self.norm(self.blocks(self.emb(ids))))


def test_normalised_branches_are_read_size_free():
    torch.manual_seed(0)
    net, ids = _PostNormLM(), torch.randint(0, 100, (2, 16))
    free = {x.name.split(".")[-1] for x in ModelMap(net, ids).layers if x.scale_free}
    assert free == {"q", "k", "v", "o", "up", "down"}  # the gate goes through SiLU: its size matters
    report = gd.check(net, ids, target=torch.randint(0, 100, (2, 16)))
    assert report.findings == [], report  # was exploding-gradient (3.4 orders) and signal-explosion (2.6)


def test_a_plain_chain_with_too_large_weights_still_explodes():
    torch.manual_seed(0)
    layers = []
    for _ in range(10):
        lin = nn.Linear(32, 32, bias=False)
        nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        with torch.no_grad():
            lin.weight.mul_(3.0)
        layers += [lin, nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(32, 10))
    assert not any(x.scale_free for x in ModelMap(net, torch.randn(16, 32)).layers)  # no norm: sizes matter
    codes = _codes(gd.check(net, torch.randn(16, 32), target=torch.randint(0, 10, (16,))))
    assert codes["exploding-gradient"] == "error" and codes["signal-explosion"] == "error"


def test_hf_olmo2_gets_no_finding():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Olmo2Config(hidden_size=64, intermediate_size=64, num_hidden_layers=6, num_attention_heads=4,
                                   vocab_size=100, pad_token_id=0)
    x = torch.randint(0, 100, (2, 16))
    report = gd.check(transformers.Olmo2ForCausalLM(cfg), {"input_ids": x, "labels": x})
    assert report.findings == [], report


# ---------------------------------------------------------------- layers fed by a constant table (SwinV2)


class _BiasedAttention(nn.Module):
    """SwinV2's continuous position bias: an MLP on a fixed coordinate table, 16 * sigmoid, added to the logits."""

    def __init__(self, d: int = 32, tokens: int = 6) -> None:
        super().__init__()
        self.register_buffer("coords", torch.linspace(-8, 8, 2 * tokens * tokens).view(tokens, tokens, 2))
        self.cpb = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 1, bias=False))
        for m in self.cpb:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)  # SwinV2's init: 50x below He for fan_in 2
        self.norm, self.qkv, self.o = nn.LayerNorm(d), nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, h):
        q, k, v = self.qkv(self.norm(h)).chunk(3, -1)
        bias = 16 * torch.sigmoid(self.cpb(self.coords).squeeze(-1))
        return h + self.o((q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + bias).softmax(-1) @ v)


def test_a_position_bias_mlp_on_a_constant_table_is_not_read_as_the_data_path():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), *[_BiasedAttention() for _ in range(4)], nn.Linear(32, 4))
    x = torch.randn(4, 6, 8)
    m = ModelMap(net, x)
    assert {x.name for x in m.layers if x.constant_input} == {f"{i}.cpb.{j}" for i in range(1, 5) for j in (0, 2)}
    report = gd.check(net, x)
    assert report.findings == [], report  # was saturating-hidden-activation and poor-init warnings


def test_integer_inputs_still_count_as_data():
    # uint8 images made float inside the model: no input is tagged, so no layer is taken for a constant
    net = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), nn.Sigmoid())], nn.Linear(16, 2))

    class FromBytes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x.float() / 255)

    x = torch.randint(0, 256, (8, 16), dtype=torch.uint8)
    assert not any(x.constant_input for x in ModelMap(FromBytes(), x).layers)
    assert _codes(gd.check(FromBytes(), x))["saturating-hidden-activation"] == "warning"


def test_hf_swinv2_gets_no_finding():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.Swinv2Config(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                                    window_size=4, num_labels=10)
    report = gd.check(transformers.Swinv2ForImageClassification(cfg), {"pixel_values": torch.randn(8, 3, 32, 32)})
    assert report.findings == [], report
