"""Model zoo: builds at depth, forward/backward, documented parameter counts, graph shape, inits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from graddoctor import zoo
from graddoctor.errors import InputError
from graddoctor.modelmap import ModelMap
from graddoctor.zoo import n_params


def _fwd_bwd(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward and backward; every parameter must get a finite gradient."""
    out = model(x)
    out.float().pow(2).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), name
    return out


# ---------------------------------------------------------------- MLP


@pytest.mark.parametrize("depth", [2, 20, 200])
def test_mlp_depths_forward_backward_and_param_count(depth):
    net = zoo.mlp(depth=depth, width=32, in_features=64, out_features=10)
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == depth
    assert _fwd_bwd(net, torch.randn(4, 64)).shape == (4, 10)
    assert n_params(net) == zoo.mlp_param_count(depth, 32, 64, 10)


def test_mlp_default_param_count_is_the_documented_number():
    assert n_params(zoo.mlp()) == 13130 == zoo.mlp_param_count()
    assert n_params(zoo.mlp(depth=1, in_features=5, out_features=3)) == 18


@pytest.mark.parametrize("norm", ["none", "batch", "layer", "group"])
@pytest.mark.parametrize("residual", [None, "plain", "rezero"])
def test_mlp_norm_and_residual_param_counts(norm, residual):
    net = zoo.mlp(depth=6, width=16, in_features=8, out_features=3, norm=norm, residual=residual)
    _fwd_bwd(net, torch.randn(4, 8))
    assert n_params(net) == zoo.mlp_param_count(6, 16, 8, 3, norm=norm, residual=residual)


@pytest.mark.parametrize("activation", list(zoo.ACTIVATIONS))
def test_mlp_activation_modules_are_swappable_modules(activation):
    net = zoo.mlp(depth=4, width=8, in_features=4, out_features=2, activation=activation)
    acts = [m for m in net if isinstance(m, zoo.ACTIVATIONS[activation])]
    assert len(acts) == 3 and not isinstance(net[-1], zoo.ACTIVATIONS[activation])
    m = ModelMap(net, torch.randn(3, 4))
    assert [x.activation for x in m.layers] == [activation] * 3 + [None]


@pytest.mark.parametrize("residual", ["plain", "rezero"])
def test_mlp_residual_switch_changes_the_forward_graph(residual):
    x = torch.randn(4, 64)
    plain = ModelMap(zoo.mlp(depth=20), x)
    skip = ModelMap(zoo.mlp(depth=20, residual=residual), x)
    assert plain.shortest_path == plain.longest_path == 20
    assert skip.longest_path == 20 and skip.shortest_path == 2


def test_rezero_mlp_starts_as_the_two_layer_net():
    net = zoo.mlp(depth=10, width=16, in_features=4, out_features=2, residual="rezero")
    x = torch.randn(5, 4)
    shallow = net[-1](net[1](net[0](x)))
    torch.testing.assert_close(net(x), shallow)


def test_mlp_seed_is_deterministic_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = zoo.mlp(seed=1), zoo.mlp(seed=1), zoo.mlp(seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)


# ---------------------------------------------------------------- init schemes


def _hidden_weight(init, activation="relu", **kw):
    return zoo.mlp(depth=3, width=256, in_features=256, activation=activation, init=init, **kw)[2]


def test_a_std_the_init_would_ignore_is_a_clear_error():
    from graddoctor.errors import InputError

    for init in ("default", "he", "xavier"):
        with pytest.raises(InputError, match="pass init='normal', std=1.0"):
            zoo.mlp(depth=3, activation="tanh", init=init, std=1.0)
    assert zoo.mlp(depth=3, init="uniform", std=0.1) is not None


def test_init_scales_match_their_definitions():
    fan = 256
    w = _hidden_weight("normal", std=0.05).weight
    assert abs(w.std().item() - 0.05) < 0.002
    assert abs(_hidden_weight(0.2).weight.std().item() - 0.2) < 0.005  # a float means normal(std)
    w = _hidden_weight("he").weight
    assert abs(w.std().item() - math.sqrt(2 / fan)) < 0.003
    w = _hidden_weight("xavier").weight
    assert abs(w.var().item() - 2 / (fan + fan)) < 2e-4
    w = _hidden_weight("uniform").weight
    assert w.abs().max().item() <= 1 / math.sqrt(fan) and w.abs().max().item() > 0.95 / math.sqrt(fan)
    w = _hidden_weight("orthogonal", activation="tanh").weight
    gain = 5 / 3
    torch.testing.assert_close(w @ w.T / gain**2, torch.eye(fan), atol=1e-4, rtol=0)
    assert float(_hidden_weight("he").bias.detach().abs().sum()) == 0.0


def test_constant_bias_option_sets_every_bias():
    net = zoo.mlp(depth=4, width=8, bias=-3.0)
    assert all(torch.all(m.bias == -3.0) for m in net if isinstance(m, nn.Linear))
    net = zoo.mlp(depth=4, width=8, init="he", bias=-3.0)
    h = net[:-1](torch.rand(16, 64))
    assert (h == 0).float().mean() > 0.9  # ReLUs mostly dead: the fault the option injects


def test_default_init_keeps_pytorch_biases():
    assert float(zoo.mlp(depth=2)[0].bias.detach().abs().sum()) > 0


# ---------------------------------------------------------------- CNN


@pytest.mark.parametrize("depth", [20, 56])
def test_resnet_depths_forward_backward_and_param_count(depth):
    net = zoo.cnn(depth=depth, in_channels=3)
    assert n_params(net) == zoo.resnet_param_count(depth)
    assert _fwd_bwd(net, torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_resnet_param_counts_match_he_et_al():
    # He et al. 2016 Table 6: 0.27M, 0.46M, 0.85M, 1.7M (option A; ours +2752 projections)
    for depth, paper in [(20, 0.27e6), (32, 0.46e6), (56, 0.85e6), (110, 1.7e6)]:
        assert abs(zoo.resnet_param_count(depth) - paper) / paper < 0.025
    assert zoo.resnet_param_count(20) == 272474


@pytest.mark.parametrize("depth", [2, 20])
def test_plain_cnn_depths(depth):
    net = zoo.cnn(depth=depth, kind="plain", width=4, in_channels=1)
    convs = sum(isinstance(m, nn.Conv2d) for m in net.modules())
    assert convs + 1 == depth
    _fwd_bwd(net, torch.randn(2, 1, 8, 8))
    assert n_params(net) == zoo.plain_param_count(depth, 1, 4)
    nobn = zoo.cnn(depth=depth, kind="plain", width=4, in_channels=1, batchnorm=False)
    assert n_params(nobn) == zoo.plain_param_count(depth, 1, 4, batchnorm=False)
    assert n_params(zoo.cnn(depth=2, kind="plain")) == 634 == 9 * 3 * 16 + 32 + 16 * 10 + 10


def test_cnn_shortcut_switch_changes_the_forward_graph():
    x = torch.randn(2, 3, 8, 8)
    res = ModelMap(zoo.cnn(depth=20), x)
    plain = ModelMap(zoo.cnn(depth=20, shortcut=False), x)
    assert plain.shortest_path == plain.longest_path
    assert res.longest_path == plain.longest_path  # same layers on the main path
    assert res.shortest_path * 4 < res.longest_path
    nobn = zoo.cnn(depth=20, batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in nobn.modules())
    assert n_params(zoo.cnn(depth=20, shortcut=False)) < n_params(zoo.cnn(depth=20))


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_cnn_input_sizes(size, channels):
    net = zoo.cnn(depth=8, width=4, in_channels=channels)
    assert net(torch.randn(2, channels, size, size)).shape == (2, 10)


def test_cnn_1d_accepts_flat_sequences():
    net = zoo.cnn(depth=8, width=4, in_channels=1, dims=1)
    assert net(torch.randn(3, 40)).shape == (3, 10)
    assert n_params(net) == zoo.resnet_param_count(8, 1, 4, 10, dims=1)


def test_cnn_bad_depth_is_one_line_input_error():
    with pytest.raises(InputError, match="6n\\+2") as e:
        zoo.cnn(depth=21)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- RNN


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [2, 20])
def test_rnn_cells_forward_backward_and_param_count(cell, layers):
    net = zoo.rnn(cell, input_size=2, hidden_size=8, num_layers=layers)
    assert _fwd_bwd(net, torch.randn(3, 6, 2)).shape == (3,)
    assert n_params(net) == zoo.rnn_param_count(cell, 2, 8, layers, 1)


def test_rnn_default_count_and_classification_heads():
    assert n_params(zoo.rnn()) == 4417
    clf = zoo.rnn("lstm", input_size=8, hidden_size=8, output_size=4, task="classification")
    assert clf(torch.randn(2, 5, 8)).shape == (2, 4)
    seq = zoo.rnn("gru", input_size=10, hidden_size=8, output_size=9, task="classification",
                  sequence_output=True)
    assert seq(torch.randn(2, 7, 10)).shape == (2, 7, 9)


def test_rnn_predicts_from_the_last_step():
    net = zoo.rnn("gru", input_size=1, hidden_size=4)
    x = torch.randn(1, 5, 1)
    torch.testing.assert_close(net(x.squeeze(-1)), net(x))  # (B, T) scalar sequences
    y = net(x)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(net(x2), y)


# ---------------------------------------------------------------- Transformer


@pytest.mark.parametrize("norm", ["pre", "post", "rezero"])
@pytest.mark.parametrize("depth", [2, 20])
def test_transformer_depths_forward_backward_and_param_count(norm, depth):
    kw = dict(depth=depth, d_model=16, nhead=2, input_dim=3, num_classes=4, max_len=32, norm=norm)
    net = zoo.transformer(**kw)
    assert _fwd_bwd(net, torch.randn(2, 7, 3)).shape == (2, 4)
    kw.pop("nhead")
    assert n_params(net) == zoo.transformer_param_count(**kw)


def test_transformer_default_count_tokens_and_rezero_identity():
    assert n_params(zoo.transformer()) == 200394
    tok = zoo.transformer(depth=2, d_model=16, nhead=2, vocab_size=12, input_dim=None, pool="last")
    assert tok(torch.randint(0, 12, (2, 9))).shape == (2, 10)
    assert n_params(tok) == zoo.transformer_param_count(2, 16, vocab_size=12, input_dim=None)
    net = zoo.transformer(depth=6, d_model=16, nhead=2, input_dim=3, norm="rezero").eval()
    x = torch.randn(2, 5, 3)
    h = net.embed(x) + net.pos[:5]
    torch.testing.assert_close(net(x), net.head(h.mean(1)))  # zero gains: blocks are identity


def test_transformer_residual_paths_visible():
    m = ModelMap(zoo.transformer(depth=6, d_model=16, nhead=2, norm="pre"), torch.randn(2, 5, 2))
    assert m.shortest_path * 3 < m.longest_path


# ---------------------------------------------------------------- DenseNet


@pytest.mark.parametrize("depth", [2, 20, 200])
def test_densenet_depths_forward_backward_and_param_count(depth):
    net = zoo.densenet(depth=depth, growth=4, in_features=16, out_features=3)
    assert _fwd_bwd(net, torch.randn(3, 16)).shape == (3, 3)
    assert n_params(net) == zoo.densenet_param_count(depth, 4, 16, 3)
    assert n_params(zoo.densenet()) == 14426
    normed = zoo.densenet(depth=depth, growth=4, in_features=16, out_features=3, norm="layer")
    assert n_params(normed) == zoo.densenet_param_count(depth, 4, 16, 3, norm="layer")


def test_densenet_dense_paths_visible():
    m = ModelMap(zoo.densenet(depth=12), torch.randn(2, 64))
    assert (m.shortest_path, m.longest_path) == (1, 12)


# ---------------------------------------------------------------- registry


def test_registry_builds_every_name():
    examples = {"mlp": torch.randn(2, 64), "cnn": torch.randn(2, 3, 8, 8),
                "resnet": torch.randn(2, 3, 8, 8), "plain-cnn": torch.randn(2, 3, 8, 8),
                "rnn": torch.randn(2, 4, 2), "lstm": torch.randn(2, 4, 2), "gru": torch.randn(2, 4, 2),
                "transformer": torch.randn(2, 4, 2), "densenet": torch.randn(2, 64)}
    assert zoo.names() == sorted(examples)
    for name, x in examples.items():
        assert zoo.build(name)(x).shape[0] == 2
    net = zoo.build("mlp", depth=20, width=64, activation="sigmoid")
    assert sum(isinstance(m, nn.Sigmoid) for m in net) == 19


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "transformer", "densenet"])
def test_every_family_is_deterministic_under_seed(name):
    a, b, c = (zoo.build(name, seed=s).state_dict() for s in (5, 5, 6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


@pytest.mark.parametrize("name,kw,match", [
    ("nope", {}, "known models: cnn, densenet"),
    ("mlp", {"activation": "swish"}, "activation='swish'.*'relu'"),
    ("mlp", {"init": "lecun"}, "init='lecun'"),
    ("mlp", {"norm": "instance"}, "norm='instance'"),
    ("mlp", {"residual": "dense"}, "residual='dense'"),
    ("mlp", {"depth": 0}, "depth=0"),
    ("mlp", {"dept": 3}, "no option 'dept'"),
    ("lstm", {"cell": "x"}, "cell='x'"),
    ("transformer", {"d_model": 10, "nhead": 4}, "divisible"),
    ("transformer", {"norm": "sandwich"}, "norm='sandwich'"),
    ("cnn", {"kind": "vgg"}, "kind='vgg'"),
])
def test_bad_options_are_one_line_input_errors(name, kw, match):
    with pytest.raises(InputError, match=match) as e:
        zoo.build(name, **kw)
    assert "\n" not in str(e.value)
