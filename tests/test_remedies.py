"""Remedies: each a pure function model -> (new_model, change); shapes, scales, no mutation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor.codes import REMEDY_IDS
from graddoctor.errors import InputError
from graddoctor.fix import remedies as remedies
from graddoctor.fix.remedies.activation import swap_activation
from graddoctor.fix.remedies.clip import adaptive_clip_grad, clip_hook, dispatch_clip_grad
from graddoctor.fix.remedies.init import expected_std, gain, reinit
from graddoctor.fix.remedies.norm import insert_norm, replace_batchnorm
from graddoctor.fix.remedies.residual import Residual, add_residual, projection
from graddoctor.modelmap import ModelMap


def snapshot(model: nn.Module) -> tuple[str, dict[str, torch.Tensor]]:
    return repr(model), {k: v.detach().clone() for k, v in model.state_dict().items()}


def unchanged(model: nn.Module, snap: tuple[str, dict[str, torch.Tensor]]) -> bool:
    text, state = snap
    now = model.state_dict()
    return repr(model) == text and now.keys() == state.keys() and all(
        torch.equal(now[k], state[k]) for k in state)


def sigmoid_mlp(depth: int = 6, width: int = 16, n_in: int = 8, n_out: int = 3,
                act: type[nn.Module] = nn.Sigmoid, out_act: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(n_in, width), act()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, n_out))
    if out_act:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 1)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.sigmoid(self.fc2(self.act(self.fc1(x)))))


class RNNNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.lstm, self.head = nn.RNN(3, 8, batch_first=True), nn.LSTM(8, 8, batch_first=True), nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.rnn(x)[0])
        return self.head(out[:, -1])


# ---------------------------------------------------------------- registry


def test_every_remedy_id_is_registered_and_unknown_ids_fail_clearly():
    assert set(REMEDY_IDS) <= set(remedies.REMEDIES)
    with pytest.raises(InputError, match="unknown remedy 'nope'"):
        remedies.get("nope")


@pytest.mark.parametrize("rid", REMEDY_IDS)
def test_no_remedy_mutates_its_input(rid):
    net, x = sigmoid_mlp(), torch.randn(32, 8)
    snap = snapshot(net)
    new, change = remedies.apply(rid, net, x, optimizer=None)
    assert unchanged(net, snap)
    assert change.remedy == rid and change.kind in ("applied", "advice", "manual")
    assert new(x).shape == (32, 3)
    change.to_dict()  # JSON-able


def test_inplace_changes_the_model_itself():
    net = sigmoid_mlp()
    new, _ = remedies.apply("relu", net, torch.randn(4, 8), inplace=True)
    assert new is net and isinstance(net[1], nn.ReLU)


# ---------------------------------------------------------------- activation


def test_swap_replaces_hidden_activations_only():
    net, x = sigmoid_mlp(out_act=True), torch.randn(5, 8)
    new, change = swap_activation(net, "relu", x)
    kinds = [type(m).__name__ for m in new]
    assert kinds.count("ReLU") == 5 and kinds[-1] == "Sigmoid"  # output sigmoid kept
    assert change.modules == ["1", "3", "5", "7", "9"] and change.details["kept_output"] == ["11"]
    # parameters are untouched by an activation swap
    for (k, a), b in zip(net.state_dict().items(), new.state_dict().values()):
        assert torch.equal(a, b), k


def test_swap_without_inputs_keeps_trailing_activation():
    new, _ = swap_activation(sigmoid_mlp(out_act=True), "gelu")
    assert isinstance(new[1], nn.GELU) and isinstance(new[-1], nn.Sigmoid)


def test_functional_activation_is_a_manual_change_naming_the_site():
    net = FunctionalNet()
    new, change = swap_activation(net, "relu", torch.randn(3, 4))
    assert isinstance(new.act, nn.ReLU)  # the module one is swapped
    manual = change.details["manual"]
    assert len(manual) == 1 and manual[0]["module"] == "" and "sigmoid" in manual[0]["code"]
    assert "F.relu(x)" in manual[0]["code"]


def test_leaky_relu_replaces_plain_relu_and_rnns_are_untouched():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    new, _ = swap_activation(net, "leaky-relu", torch.randn(2, 3))
    assert isinstance(new[1], nn.LeakyReLU)
    rnn = RNNNet()
    new, change = swap_activation(rnn, "relu", torch.randn(2, 5, 3))
    assert change.modules == [] and repr(new) == repr(rnn)


def test_shared_activation_module_is_replaced_everywhere():
    act = nn.Tanh()
    net = nn.Sequential(nn.Linear(2, 2), act, nn.Linear(2, 2), act, nn.Linear(2, 1))
    new, change = swap_activation(net, "relu", torch.randn(2, 2))
    assert isinstance(new[1], nn.ReLU) and new[1] is new[3]
    assert change.modules == ["1", "3"]


# ---------------------------------------------------------------- init


@pytest.mark.parametrize("scheme,act,mod", [("he-init", "relu", nn.ReLU), ("he-init", "tanh", nn.Tanh),
                                            ("xavier-init", "tanh", nn.Tanh),
                                            ("xavier-init", "sigmoid", nn.Sigmoid)])
def test_init_matches_documented_std(scheme, act, mod):
    net = nn.Sequential(nn.Linear(300, 500), mod(), nn.Linear(500, 10))
    new, change = reinit(net, scheme, torch.randn(4, 300))
    w = new[0].weight
    want = {"he-init": gain(act) / math.sqrt(300),
            "xavier-init": math.sqrt(2 / 800)}[scheme]  # Glorot: no gain for tanh/sigmoid
    assert want == pytest.approx(expected_std(scheme, w, act))
    assert w.std().item() == pytest.approx(want, rel=0.02)
    # the output layer takes the gain of the activation feeding it
    assert new[2].weight.std().item() == pytest.approx(expected_std(scheme, new[2].weight, act), rel=0.05)
    assert float(new[0].bias.detach().abs().max()) == 0.0
    assert change.details["activations"] == {"0": act, "2": act}


def test_he_init_uses_leaky_slope_and_conv_fan_in():
    net = nn.Sequential(nn.Conv2d(16, 64, 3), nn.LeakyReLU(0.2), nn.Conv2d(64, 4, 1))
    new, _ = reinit(net, "he-init", torch.randn(2, 16, 8, 8))
    want = math.sqrt(2 / (1 + 0.04)) / math.sqrt(16 * 9)
    assert new[0].weight.std().item() == pytest.approx(want, rel=0.03)


def test_orthogonal_and_delta_orthogonal():
    net = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Conv1d(8, 8, 5))
    new, _ = reinit(net, "orthogonal-init")  # no inputs: following activation by module order
    w = new[0].weight
    assert torch.allclose(w @ w.T, 2 * torch.eye(32), atol=1e-4)  # gain sqrt(2) for ReLU
    k = new[2].weight
    centre = k[:, :, 2]
    assert torch.allclose(centre @ centre.T, 2 * torch.eye(8), atol=1e-5)  # output: gain of the ReLU feeding it
    assert float(k[:, :, [0, 1, 3, 4]].detach().abs().max()) == 0.0


def test_lsuv_gives_unit_output_variance_per_layer():
    torch.manual_seed(1)
    net = nn.Sequential(*[m for _ in range(10) for m in (nn.Linear(32, 32), nn.Tanh())], nn.Linear(32, 4))
    x = torch.randn(256, 32) * 3
    new, change = reinit(net, "lsuv-init", x)
    variances = []
    hooks = [m.register_forward_hook(lambda m, a, o: variances.append(o.var().item()))
             for m in new if isinstance(m, nn.Linear)]
    with torch.no_grad():
        new(x)
    for h in hooks:
        h.remove()
    assert len(variances) == 11 and all(abs(v - 1) < 0.06 for v in variances), variances
    with pytest.raises(InputError, match="needs example inputs"):
        reinit(net, "lsuv-init")


# ---------------------------------------------------------------- norm


@pytest.mark.parametrize("batch,expected", [(32, nn.BatchNorm1d), (4, nn.LayerNorm)])
def test_norm_choice_by_batch_for_linear(batch, expected):
    net = sigmoid_mlp(depth=4)
    x = torch.randn(batch, 8)
    new, change = insert_norm(net, "auto", x)
    assert [type(new[i][1]) for i in (0, 2, 4)] == [expected] * 3
    assert isinstance(new[6], nn.Linear)  # output layer untouched
    assert new(x).shape == (batch, 3) and change.modules == ["0", "2", "4"]


def test_norm_for_conv_and_sequences():
    conv = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU(), nn.Conv2d(12, 2, 1))
    new, _ = insert_norm(conv, "auto", torch.randn(2, 3, 6, 6))
    assert isinstance(new[0][1], nn.GroupNorm) and new[0][1].num_groups == 3
    new, _ = insert_norm(conv, "auto", torch.randn(32, 3, 6, 6))
    assert isinstance(new[0][1], nn.BatchNorm2d)
    seq = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    new, _ = insert_norm(seq, "batch", torch.randn(32, 10, 5))  # (B, T, F): BN impossible
    assert isinstance(new[0][1], nn.LayerNorm)


def test_existing_norm_is_not_doubled():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                        nn.Linear(8, 1))
    _, change = insert_norm(net, "batch", torch.randn(32, 4))
    assert change.modules == ["3"]


def test_replace_batchnorm_copies_affine_and_keeps_outputs_shape():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        net[1].weight.uniform_()
    x = torch.randn(2, 3, 6, 6)
    new, change = replace_batchnorm(net, "layer", x)
    assert isinstance(new[1], nn.GroupNorm) and new[1].num_groups == 1
    assert isinstance(new[5], nn.LayerNorm)
    assert torch.equal(new[1].weight, net[1].weight)
    assert new(x).shape == (2, 2) and change.modules == ["1", "5"]
    new, _ = remedies.apply("groupnorm", net, x)
    assert isinstance(new[1], nn.GroupNorm) and new[1].num_groups == 2


def test_groupnorm_keeps_enough_values_per_group_on_small_maps():
    """32 channels: 8 groups on a 16x16 map, but only 2 on a 2x2 map (>= 64 values a group)."""
    def net() -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.Conv2d(32, 2, 1))
    for size, groups in ((16, 8), (2, 2)):
        new, _ = remedies.apply("groupnorm", net(), torch.randn(2, 3, size, size))
        assert new[1].num_groups == groups
        assert 32 // groups * size * size >= 64
    new, _ = insert_norm(nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
                                       nn.Conv2d(32, 2, 1)), "group", torch.randn(2, 3, 2, 2))
    assert new[0][1].num_groups == 2


# ---------------------------------------------------------------- residual


def test_rezero_block_is_exactly_the_identity_at_init():
    block = Residual(nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 6)), rezero=True)
    x = torch.randn(4, 6)
    assert torch.equal(block(x), x)


def test_rezero_model_output_equals_the_model_without_its_blocks():
    net, x = sigmoid_mlp(depth=6, act=nn.ReLU), torch.randn(5, 8)
    new, change = add_residual(net, x, rezero=True)
    assert change.modules == ["2", "6"]  # blocks (2,3,4,5) and (6,7,8,9); stem and head outside
    skipped = nn.Sequential(net[0], net[1], net[10])
    assert torch.allclose(new(x), skipped(x))
    # the plain residual adds the block's output
    new, _ = add_residual(net, x)
    block = nn.Sequential(*list(net)[2:6])
    h = net[1](net[0](x))
    assert torch.allclose(new[2](h), h + block(h))


def test_residual_projection_for_shape_changes():
    assert projection((2, 8), (2, 8)) is None
    assert isinstance(projection((2, 8), (2, 4)), nn.Linear)
    conv = projection((2, 4, 8, 8), (2, 8, 4, 4))
    assert isinstance(conv, nn.Conv2d) and conv.stride == (2, 2) and conv.kernel_size == (1, 1)
    with pytest.raises(ValueError):
        projection((2, 4, 8, 8), (2, 16))


def test_residual_on_a_resnet_without_shortcuts():
    from graddoctor import zoo

    net = zoo.cnn(depth=14, shortcut=False, width=4, in_channels=1)
    x = torch.randn(2, 1, 8, 8)
    new, change = add_residual(net, x)
    assert len(change.modules) == 6 and len(change.details["projections"]) == 2
    assert new(x).shape == (2, 10)
    assert all(isinstance(new.stages[s][b], Residual) for s in range(3) for b in range(2))


def test_residual_without_a_sequential_chain_is_manual():
    _, change = add_residual(FunctionalNet(), torch.randn(2, 4))
    assert change.kind == "manual" and change.modules == []


# ---------------------------------------------------------------- clipping and advice


def _params_with_grads(seed: int = 0) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    ps = [nn.Parameter(torch.randn(4, 3, generator=g)), nn.Parameter(torch.randn(5, generator=g))]
    for p in ps:
        p.grad = torch.randn(p.shape, generator=g) * 10
    return ps


def test_clip_norm_and_value_match_plain_oracles():
    ps = _params_with_grads()
    grads = [p.grad.clone() for p in ps]
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    dispatch_clip_grad(ps, 1.0, "norm")
    for p, g in zip(ps, grads):
        assert torch.allclose(p.grad, g / total, atol=1e-5)
    ps = _params_with_grads()
    grads = [p.grad.clone() for p in ps]
    dispatch_clip_grad(ps, 0.5, "value")
    for p, g in zip(ps, grads):
        assert torch.equal(p.grad, g.clamp(-0.5, 0.5))


def test_agc_matches_unitwise_oracle():
    ps = _params_with_grads()
    grads = [p.grad.clone() for p in ps]
    adaptive_clip_grad(ps, 0.1)
    w, g = ps[0].detach(), grads[0]
    for i in range(4):  # per output row
        max_norm = 0.1 * max(w[i].norm().item(), 1e-3)
        gi = g[i] if g[i].norm() < max_norm else g[i] * max_norm / g[i].norm()
        assert torch.allclose(ps[0].grad[i], gi, atol=1e-5)
    max_norm = 0.1 * ps[1].detach().norm()
    assert torch.allclose(ps[1].grad, grads[1] * max_norm / grads[1].norm(), atol=1e-5)


def test_clip_hook_runs_before_the_optimizer_step():
    p = nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p], lr=1.0)
    _, change = remedies.apply("clip-norm", nn.Linear(1, 1), optimizer=opt)
    assert change.kind == "applied"
    p.grad = torch.tensor([30.0, 40.0, 0.0])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.6, -0.8, 0.0]), atol=1e-6)
    change.handles[0].remove()
    h = opt.register_step_pre_hook(clip_hook("value", 0.1))
    p.grad = torch.tensor([30.0, -40.0, 0.05])
    opt.step()
    assert torch.allclose(p.detach(), torch.tensor([-0.7, -0.7, -0.05]), atol=1e-6)
    h.remove()


def test_advice_remedies():
    _, change = remedies.apply("lstm", RNNNet())
    assert change.kind == "manual" and change.modules == ["rnn"] and "nn.LSTM(3, 8" in change.details["code"][0]
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.5)
    _, change = remedies.apply("lower-lr", nn.Linear(1, 1), optimizer=opt)
    assert change.kind == "advice" and change.details["suggested"] == [0.05]
    assert opt.param_groups[0]["lr"] == 0.5  # advice only


# ---------------------------------------------------------------- one ModelMap along the plan


class GatedNet(nn.Module):
    """A sigmoid gate (SE style), a shared tanh module called twice, a PReLU with a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.gate, self.out = (nn.Linear(4, 8), nn.Linear(8, 8),
                                                   nn.Linear(8, 8), nn.Linear(8, 2))
        self.act, self.sig, self.prelu = nn.Tanh(), nn.Sigmoid(), nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = self.act(self.fc2(h)) * self.sig(self.gate(h))
        return self.out(self.prelu(h))


MAP_MODELS = {
    "sigmoid-mlp": (lambda: sigmoid_mlp(depth=8, out_act=True), lambda: torch.randn(16, 8)),
    "tanh-cnn": (lambda: nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3),
                                       nn.Tanh(), nn.Flatten(), nn.Linear(4 * 36, 2)),
                 lambda: torch.randn(4, 3, 8, 8)),
    "gated": (GatedNet, lambda: torch.randn(8, 4)),
    "functional": (FunctionalNet, lambda: torch.randn(8, 4)),
}


@pytest.mark.parametrize("name", MAP_MODELS)
@pytest.mark.parametrize("to", ["relu", "leaky-relu"])
def test_swap_keeps_the_model_map_exact(name, to):
    """The map a swap hands on (``with_activations``) equals a fresh trace of the new model."""
    build, inputs = MAP_MODELS[name]
    net, x = build(), inputs()
    mm = ModelMap(net, x)
    before = mm.to_dict()
    new, change = swap_activation(net, to, x, mmap=mm, sources={"sigmoid", "tanh", "prelu", "relu"})
    fresh = ModelMap(new, x)
    assert change.mmap is not None and change.mmap.to_dict() == fresh.to_dict(), name
    assert change.mmap.module_shapes == fresh.module_shapes
    assert mm.to_dict() == before  # the input map is not changed
    # and the swap itself is the same with or without a map given
    assert repr(swap_activation(net, to, x, sources={"sigmoid", "tanh", "prelu", "relu"})[0]) == repr(new)


def test_residual_from_a_given_map_equals_its_own_trace():
    net, x = sigmoid_mlp(depth=9, act=nn.ReLU), torch.randn(16, 8)
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 3, stride=2, padding=1),
                        nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 2))
    for model, inp in ((net, x), (cnn, torch.randn(4, 3, 8, 8))):
        torch.manual_seed(1)
        a, ca = add_residual(model, inp)
        torch.manual_seed(1)
        b, cb = add_residual(model, inp, mmap=ModelMap(model, inp))
        assert repr(a) == repr(b) and ca.modules == cb.modules and ca.details == cb.details
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_replace_modules_replaces_every_registration_in_one_walk():
    from graddoctor.fix.remedies.base import replace_modules

    shared = nn.Tanh()
    net = nn.Sequential(nn.Linear(2, 2), shared, nn.Sequential(nn.Linear(2, 2), shared), nn.Sigmoid())
    old_s, new_t, new_s = net[3], nn.ReLU(), nn.GELU()
    out = replace_modules(net, {shared: new_t, old_s: new_s})
    assert out == {shared: ["1", "2.1"], old_s: ["3"]}
    assert net[1] is new_t and net[2][1] is new_t and net[3] is new_s


def test_reinit_keeps_frozen_layers():
    net = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    net[0].requires_grad_(False)
    frozen = net[0].weight.clone()
    _, change = reinit(net, "he-init", torch.randn(4, 8), inplace=True)
    assert torch.equal(net[0].weight, frozen) and "0" not in change.modules and "2" in change.modules


def test_a_gate_is_never_swapped_to_relu():
    # tanh(h(x)) * sigmoid(g(x)): both are gates (their output multiplies another tensor); a ReLU
    # there changes what the block computes. The plain hidden tanh of the next block is swapped
    from graddoctor import ModelMap
    from graddoctor.fix.remedies.activation import swap_activation

    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.h, self.g, self.act, self.gate = nn.Linear(8, 8), nn.Linear(8, 8), nn.Tanh(), nn.Sigmoid()

        def forward(self, x):
            return self.act(self.h(x)) * self.gate(self.g(x))

    net = nn.Sequential(Gated(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
    x = torch.randn(4, 8)
    new, change = swap_activation(net, "relu", x, mmap=ModelMap(net, x))
    assert isinstance(new[0].act, nn.Tanh) and isinstance(new[0].gate, nn.Sigmoid)
    assert isinstance(new[2], nn.ReLU) and change.modules == ["2"]
    assert change.details["kept_gates"] == ["0.act", "0.gate"]


def test_small_init_draws_variance_two_fifths_over_fan_in_without_gain():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    new, change = reinit(net, "small-init")
    for layer, fan_in in ((new[0], 512), (new[2], 256)):
        assert layer.weight.std().item() == pytest.approx((2 / (5 * fan_in)) ** 0.5, rel=0.05)
        assert torch.count_nonzero(layer.bias) == 0
    assert change.kind == "applied" and "Nguyen & Salazar" in change.why
    assert net[0].weight.std().item() != pytest.approx(new[0].weight.std().item(), rel=0.05)  # a copy


@pytest.mark.parametrize("scheme", ["small-init", "xavier-init", "orthogonal-init"])
def test_reinit_redraws_multihead_attention_query_key_value_weights(scheme):
    # nn.MultiheadAttention's q/k/v projections are parameters of its own, not Linear layers:
    # a Transformer drawn at std 1 kept them at std 1 after a re-init
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, batch_first=True), 2,
                                enable_nested_tensor=False)
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0.0, 1.0)
    new, change = reinit(enc, scheme, torch.randn(2, 5, 64))
    attn = new.layers[1].self_attn
    want = {"small-init": (2 / (5 * 64)) ** 0.5, "xavier-init": 64 ** -0.5, "orthogonal-init": 64 ** -0.5}[scheme]
    for block in attn.in_proj_weight.chunk(3, 0):  # each block an (E x E) layer, gain 1
        assert block.std().item() == pytest.approx(want, rel=0.1)
    assert torch.count_nonzero(attn.in_proj_bias) == 0
    assert "layers.1.self_attn" in change.modules and "layers.1.self_attn.out_proj" in change.modules
    assert enc.layers[1].self_attn.in_proj_weight.std().item() == pytest.approx(1.0, rel=0.1)  # a copy


def test_reinit_redraws_separate_attention_projections_by_their_own_fan_in():
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(64, 4, kdim=32, vdim=16)
    new, _ = reinit(mha, "small-init", layers=["out_proj"])  # named by its out_proj: re-drawn too
    for w, fan_in in ((new.q_proj_weight, 64), (new.k_proj_weight, 32), (new.v_proj_weight, 16)):
        assert w.std().item() == pytest.approx((2 / (5 * fan_in)) ** 0.5, rel=0.15)
