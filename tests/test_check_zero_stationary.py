"""Zero weights at a stationary point (``graddoctor.measure.probe_zero``).

A Llama whose block RMSNorm gains are zero: the ``input_layernorm`` gains get a gradient and move
at the first step, but a SwiGLU MLP reads its ``post_attention_layernorm`` gain only to second
order, so that gain, ``gate_proj`` and ``up_proj`` get exactly zero gradient at every step and never
train. ``gd.check`` reported nothing: next to zero weights that move, every zero-gradient layer was
taken for "not yet on the path". One nudged backward tells the two apart. Controls: a zero head,
zero-init residual gains (BatchNorm gamma, ReZero, LayerScale) unlock what they cut at the first step.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import graddoctor as gd
from graddoctor.diagnose.checktime.probe_rules import gradient_flow
from graddoctor.measure.probe import ProbeResult
from graddoctor.measure.probe_zero import NUDGE
from graddoctor.modelmap import ModelMap


class RMSNorm(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class Block(nn.Module):
    """A Llama block: RMSNorm, attention, RMSNorm, SwiGLU MLP, residuals around both."""

    def __init__(self, d: int = 16, h: int = 32):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(d), RMSNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
        self.gate, self.up, self.down = (nn.Linear(d, h, bias=False), nn.Linear(d, h, bias=False),
                                         nn.Linear(h, d, bias=False))

    def forward(self, x):
        a = self.ln1(x)
        att = torch.softmax(self.q(a) @ self.k(a).transpose(-1, -2) / 4.0, dim=-1) @ self.v(a)
        x = x + self.o(att)
        b = self.ln2(x)
        return x + self.down(F.silu(self.gate(b)) * self.up(b))


def _llama_like(zero: str = "blocks") -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), Block(), Block(), RMSNorm(16), nn.Linear(16, 4))
    with torch.no_grad():
        for n, p in net.named_parameters():
            if (zero == "blocks" and n.endswith(("ln1.weight", "ln2.weight"))) or (zero == "final" and n == "3.weight"):
                p.zero_()
    return net


X = torch.randn(4, 6, 8)


def _loss(out, target=None):
    return out.pow(2).mean()


def test_a_zero_norm_gain_in_front_of_a_swiglu_mlp_is_an_error_naming_its_projections():
    net = _llama_like("blocks")
    r = gd.check(net, X, loss_fn=_loss)
    (f,) = r.by_code("vanishing-gradient")
    assert f.severity == "error" and "stationary point" in f.message, str(r)
    assert sorted(f.layers) == ["1.gate", "1.up", "2.gate", "2.up"]
    assert f.evidence["zero_params_stationary"] == ["1.ln2.weight", "2.ln2.weight"]
    assert f.evidence["zero_params_moving"] == ["1.ln1.weight", "2.ln1.weight"]
    assert f.remedies == ["norm-gain"]  # a norm gain: set to 1, no re-draw of weights that are fine


def test_what_check_calls_stuck_never_trains_and_what_it_calls_unlocked_does():
    """The oracle: plain Adam steps. The flagged layers and the stationary gains do not move in 4 steps;
    the q/k projections, also exactly zero at init (cut by ln1, which moves), train from step 2."""
    net = _llama_like("blocks")
    stuck = set(gd.check(net, X, loss_fn=_loss).by_code("vanishing-gradient")[0].layers)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(4):
        opt.zero_grad()
        _loss(net(X)).backward()
        opt.step()
    moved = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    assert not {f"{s}.weight" for s in stuck} & moved and not {"1.ln2.weight", "2.ln2.weight"} & moved
    assert {"1.q.weight", "1.k.weight", "1.ln1.weight", "2.q.weight"} <= moved


def test_the_measurement_matches_plain_autograd_after_one_signed_step():
    net = _llama_like("blocks")
    st = gd.check(net, X, loss_fn=_loss).data["probe"]["zero_stationary"]
    ref = _llama_like("blocks")
    _loss(ref(X)).backward()
    with torch.no_grad():
        for n in ("1.ln1.weight", "2.ln1.weight"):
            p = ref.get_parameter(n)
            p.copy_(-p.grad.sign() * NUDGE)
    ref.zero_grad()
    outs = {}
    hooks = [ref.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: outs.__setitem__(n, o))
             for n in ("1.q", "1.k", "1.gate", "1.up", "2.q", "2.k", "2.gate", "2.up")]
    out = ref(X)
    for h in hooks:
        h.remove()
    for t in outs.values():
        t.retain_grad()
    _loss(out).backward()
    zero = sorted(n for n, t in outs.items() if not t.grad.any())
    assert sorted(st["layers"]) == zero == ["1.gate", "1.up", "2.gate", "2.up"]
    assert st["stationary"] == [n for n in ("1.ln2.weight", "2.ln2.weight") if not ref.get_parameter(n).grad.any()]
    assert st["started"] == []


def test_check_leaves_the_model_bit_identical():
    net = _llama_like("blocks")
    with torch.no_grad():
        net.get_parameter("1.ln1.weight").fill_(-0.0)  # a moving zero with its sign bit set
    net[1].eval()
    torch.manual_seed(0)
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    params = {n: (p.detach().clone(), p.grad.clone(), p._version) for n, p in net.named_parameters()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    r = gd.check(net, X, loss_fn=_loss)
    assert r.data["probe"]["zero_stationary"] is not None  # the nudged pass did run
    for n, p in net.named_parameters():
        w, g, v = params[n]
        assert torch.equal(p.detach().view(torch.int32), w.view(torch.int32)), n  # bits, sign of zero too
        assert torch.equal(p.grad, g) and p._version == v, n
    assert [m.training for m in net.modules()] == modes and torch.equal(torch.get_rng_state(), rng)


def _forwards(net: nn.Module, **kw) -> tuple[int, gd.Report]:
    calls = []
    h = net.register_forward_hook(lambda *a: calls.append(1))
    try:
        r = gd.check(net, **kw)
    finally:
        h.remove()
    return len(calls), r


def test_one_extra_forward_only_where_zero_weights_that_move_sit_next_to_ones_that_do_not():
    n_healthy, r = _forwards(_llama_like("none"), example_inputs=X, loss_fn=_loss)
    assert r.data["probe"]["zero_stationary"] is None and "vanishing-gradient" not in r.codes
    n_final, r = _forwards(_llama_like("final"), example_inputs=X, loss_fn=_loss)  # a zero final norm gain
    assert r.data["probe"]["zero_stationary"] is None and "vanishing-gradient" not in r.codes, str(r)
    n_blocks, r = _forwards(_llama_like("blocks"), example_inputs=X, loss_fn=_loss)
    assert n_final == n_healthy and n_blocks == n_healthy + 1


# ---------------------------------------------------------------- controls: zero weights that move


class ResBlock(nn.Module):
    def __init__(self, c: int = 8, unused_zero: bool = False):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn2.weight)  # zero_init_residual
        if unused_zero:  # a zero parameter off the loss's path (an unused mask token)
            self.mask_token = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def test_zero_init_residual_branches_stay_silent_also_next_to_an_unused_zero_parameter():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), ResBlock(),
                        ResBlock(unused_zero=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
    x, y = torch.randn(8, 3, 4, 4), torch.randint(0, 5, (8,))
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    r = gd.check(net, x, target=y)
    assert all(torch.equal(b, buffers[n]) for n, b in net.named_buffers())  # BatchNorm statistics: two forwards
    p = r.data["probe"]
    assert sorted(p["zero_params_moving"]) == ["3.bn2.weight", "4.bn2.weight"]
    zero = [n for n, g in zip(p["layers"], p["grad_rms"]) if g == 0.0]
    assert zero == ["3.conv1", "3.conv2", "4.conv1", "4.conv2"]
    # measured (a zero parameter that does not move), but the unused one is off the path, and once the
    # gains have moved every branch conv gets a gradient
    assert p["zero_stationary"] == {"stationary": [], "started": [], "layers": []}
    assert "vanishing-gradient" not in r.codes, str(r)


class ReZeroBlock(nn.Module):
    """ReZero's alpha around attention, a LayerScale gain (zero) around a SwiGLU MLP, no norms."""

    def __init__(self, d: int = 16, h: int = 32):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.alpha, self.gamma = nn.Parameter(torch.zeros(())), nn.Parameter(torch.zeros(d))
        self.gate, self.up, self.down = nn.Linear(d, h), nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        x = x + self.alpha * self.attn(x, x, x, need_weights=False)[0]
        return x + self.gamma * self.down(F.silu(self.gate(x)) * self.up(x))


def test_rezero_and_layerscale_gains_of_zero_stay_silent():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), ReZeroBlock(), ReZeroBlock(), nn.Linear(16, 4))
    r = gd.check(net, X, loss_fn=_loss)
    assert len(r.data["probe"]["zero_params_moving"]) == 4 and r.data["probe"]["zero_stationary"] is None
    assert "vanishing-gradient" not in r.codes, str(r)


def test_two_zero_factors_in_series_next_to_a_zero_head_that_moves_are_caught():
    """LayerScale gamma = 0 after a zero output projection never moves; a zero head does. Before, the
    moving head made every zero-gradient layer "not yet on the path"."""

    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(16, 32), nn.Linear(32, 16)
            self.gamma = nn.Parameter(torch.zeros(16))
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)

        def forward(self, x):
            return x + self.gamma * self.fc2(F.gelu(self.fc1(x)))

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), Branch(), Branch(), nn.Linear(16, 4))
    nn.init.zeros_(net[3].weight)
    r = gd.check(net, torch.randn(32, 8), target=torch.randint(0, 4, (32,)))
    (f,) = r.by_code("vanishing-gradient")
    assert f.severity == "error" and sorted(f.layers) == ["1.fc1", "1.fc2", "2.fc1", "2.fc2"], str(r)
    assert f.remedies[0] == "he-init"  # zero Linear weights: a re-init does move them


# ---------------------------------------------------------------- the rule alone


def test_the_rule_needs_stationary_weights_and_stuck_layers():
    """``started`` zeros were nudged in turn until none started (``probe_zero``): they no longer
    stop the rule, they add to the count of zeros that move."""
    m = ModelMap(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)), torch.randn(1, 2))
    base = dict(layers=["0", "1", "2"], grad_rms=[0.0, 1.0, 1.0], zero_params=["g", "h"],
                zero_params_moving=["h"])
    st = {"stationary": ["g"], "started": [], "layers": ["0"]}
    assert gradient_flow(ProbeResult(**base, zero_stationary=st), m)[0].layers == ["0"]
    (f,) = gradient_flow(ProbeResult(**base, zero_stationary={**st, "started": ["k"]}), m)
    assert "that get one (2)" in f.message and f.evidence["zero_params_started"] == ["k"]
    for other in ({"stationary": []}, {"layers": []}):
        assert gradient_flow(ProbeResult(**base, zero_stationary={**st, **other}), m) == []
    assert gradient_flow(ProbeResult(**base), m) == []  # not measured: as before


# ---------------------------------------------------------------- a real Llama


def _llama(zero: str):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    m = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64))
    with torch.no_grad():
        for n, p in m.named_parameters():
            if "norm" in n and (zero == "all" or (zero == "blocks" and "layers." in n)
                                or (zero == "final" and n == "model.norm.weight")):
                p.zero_()
    ids = torch.randint(1, 100, (4, 16))
    return m, {"input_ids": ids, "labels": ids}


def test_a_llama_with_zero_block_norms_gets_an_error_naming_its_mlp_projections():
    r = gd.check(*_llama("blocks"))
    (f,) = r.by_code("vanishing-gradient")
    assert f.severity == "error", str(r)
    assert sorted(f.layers) == sorted(f"model.layers.{i}.mlp.{p}_proj" for i in range(4) for p in ("gate", "up"))
    assert all(n.endswith("post_attention_layernorm.weight") for n in f.evidence["zero_params_stationary"])


@pytest.mark.parametrize("zero", ["none", "final"])
def test_llama_controls_name_no_layer_that_a_moving_zero_weight_unlocks(zero: str):
    """Healthy, and a zero final norm (it moves at step 1): silent."""
    r = gd.check(*_llama(zero))
    assert "vanishing-gradient" not in r.codes, str(r)


def test_a_llama_with_every_norm_zero_gets_the_error_of_its_mlp_projections():
    """All norms zero: the final gain moves at step 1, the input_layernorm gains next (they start in
    the second nudged pass, and attention's q/k/v with them); the post-attention gains in front of
    SwiGLU never do (silent before: one nudged pass saw the input norms start and stopped there).
    Measured by training: after 20 Adam steps those gains are still exactly 0."""
    r = gd.check(*_llama("all"))
    (f,) = r.by_code("vanishing-gradient")
    assert sorted(f.layers) == sorted(f"model.layers.{i}.mlp.{p}_proj" for i in range(4) for p in ("gate", "up"))
    assert all("input_layernorm" in n for n in f.evidence["zero_params_started"])
    assert all("post_attention_layernorm" in n for n in f.evidence["zero_params_stationary"])
    model, batch = _llama("all")
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(20):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    assert all(float(model.model.layers[i].post_attention_layernorm.weight.abs().max()) == 0 for i in range(4))
    assert float(model.model.layers[0].input_layernorm.weight.abs().max()) > 0
