"""The labelled scenario suite: short training runs from the zoo with known faults.

Each scenario builds a zoo model, a dataset from ``graddoctor.data``, an optimizer
and a step budget (<= 200), and states the finding codes the injected fault
*physically* produces (``expected``; empty for healthy controls). Labels come
from the mechanism, written next to each fault, never from what the rules print:

- vanishing-gradient: backward gain per layer well below 1 over many layers
  (sigmoid' <= 1/4; tanh/ReLU with too-small weights; a dead layer passes 0);
- stalled-layers: the same under SGD (update = lr * gradient), or under Adam when
  the input-side gradients are far below its eps (1e-8);
- loss-plateau: the input signal cannot reach the head (deep sigmoid, dead or
  saturated layers) or the step is too small, so the loss sits near its start;
- exploding-gradient: a learning rate past the stability limit, or a recurrent
  weight with gain > 1, blows the norms up; non-finite: a NaN/Inf is an event, so
  its label is read from the raw records of each run (see score.py), the
  scenarios' ``N`` is the prediction (divergence usually, not always, overflows);
- dead-relu: ReLU units with a large negative bias never fire;
- saturated-activation: sigmoid/tanh pre-activations far beyond +-3.

Example:
    >>> from scenarios import SCENARIOS
    >>> len(SCENARIOS) >= 40 and sum(not s.expected for s in SCENARIOS) >= len(SCENARIOS) // 2
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from graddoctor import data, zoo

TRAINING_CODES = ("vanishing-gradient", "exploding-gradient", "non-finite", "dead-relu",
                  "saturated-activation", "stalled-layers", "loss-plateau", "poor-init")


@dataclass
class Run:
    """What a scenario builds: model, optimizer, batches, loss and the step budget."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    steps: int
    example: torch.Tensor
    scaler: torch.amp.GradScaler | None = None
    overflow_every: int = 0  # with a scaler: every n-th step's gradients overflow to inf


@dataclass
class Scenario:
    name: str
    arch: str
    fault: str  # "none" for healthy controls; else what was injected
    expected: frozenset[str]
    build: Callable[..., Run] = field(repr=False)  # build(seed=0)
    why: str = ""


# ---------------------------------------------------------------- data


_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _data(name: str, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    key = (name, tuple(sorted(kw.items())))
    if key not in _CACHE:
        opts = dict(kw)
        if name in ("adding", "temporal-order"):
            opts.setdefault("n_train", 2000)
            opts.setdefault("n_test", 100)
        b = data.load(name, seed=0, **opts)
        _CACHE[key] = (b.x_train.float(), b.y_train)
    return _CACHE[key]


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int = 32, seed: int = 0) -> Iterator:
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(x), (bs,), generator=g)
        yield x[idx], y[idx]


def digits_flat():
    return _data("digits")


def digits_img():
    return _data("digits", flat=False)


def digits_rows():
    x, y = _data("digits")
    return x.view(-1, 8, 8), y


def mnist1d_flat():
    return _data("mnist1d")


def standardized(xy):
    """Targets rescaled to mean 0, std 1 (so predicting the mean gives loss 1 from the start)."""
    x, y = xy
    return x, (y - y.mean()) / y.std()


def binary_digits():
    x, y = _data("digits")
    return x, (y >= 5).float()


# ---------------------------------------------------------------- builders

CE = nn.functional.cross_entropy


def _bce(out, y):
    return nn.functional.binary_cross_entropy(out.squeeze(-1), y)


def _log_softmax_bug(out, y):
    return nn.functional.nll_loss(torch.log(torch.softmax(out * 1000.0, dim=-1)), y)


def _mse(out, y):
    return nn.functional.mse_loss(out, y)


def _opt(model, name: str, lr: float):
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if name == "plain-sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr)


def _run(model, xy, opt="adam", lr=1e-3, loss=CE, steps=120, bs=32, seed=0) -> Run:
    x, y = xy
    return Run(model, _opt(model, opt, lr), _batches(x, y, bs, seed), loss, steps, x[:bs])


def mlp_run(xy=digits_flat, opt="adam", lr=1e-3, steps=120, loss=CE, **kw) -> Callable[..., Run]:
    def build(seed: int = 0) -> Run:
        x, y = xy()
        kw.setdefault("width", 32)
        model = zoo.mlp(in_features=x.shape[1], out_features=10, seed=seed, **kw)
        return _run(model, (x, y), opt, lr, loss=loss, steps=steps, seed=seed)
    return build


def cnn_run(opt="sgd", lr=0.05, steps=100, **kw) -> Callable[..., Run]:
    def build(seed: int = 0) -> Run:
        kw.setdefault("width", 8)
        model = zoo.cnn(in_channels=1, num_classes=10, seed=seed, **kw)
        return _run(model, digits_img(), opt, lr, steps=steps, seed=seed)
    return build


def seq_run(cell="lstm", task="digits", T=8, opt="adam", lr=3e-3, steps=120, hidden=32,
            post: Callable[[nn.Module], None] | None = None, **kw) -> Callable[..., Run]:
    def build(seed: int = 0) -> Run:
        if task == "digits":
            xy, n_out, mode, loss = digits_rows(), 10, "classification", CE
        elif task == "adding":
            xy, n_out, mode, loss = standardized(_data("adding", T=T)), 1, "regression", _mse
        else:
            xy, n_out, mode, loss = _data("temporal-order", T=T), 4, "classification", CE
        model = zoo.rnn(cell, input_size=xy[0].shape[-1], hidden_size=hidden, output_size=n_out,
                        task=mode, seed=seed, **kw)
        if post is not None:
            post(model)
        return _run(model, xy, opt, lr, loss=loss, steps=steps, seed=seed)
    return build


def tf_run(norm="pre", depth=4, opt="adam", lr=1e-3, steps=100, **kw) -> Callable[..., Run]:
    def build(seed: int = 0) -> Run:
        model = zoo.transformer(depth=depth, d_model=32, nhead=4, norm=norm, input_dim=8,
                                num_classes=10, max_len=16, seed=seed, **kw)
        return _run(model, digits_rows(), opt, lr, steps=steps, seed=seed)
    return build


def binary_sigmoid_head(**kw) -> Callable[..., Run]:
    """A healthy ReLU MLP ending in a sigmoid output unit (BCE): the output site must not count."""
    def build(seed: int = 0) -> Run:
        x, y = binary_digits()
        model = nn.Sequential(zoo.mlp(depth=4, width=32, in_features=64, out_features=1,
                                      init="he", seed=seed), nn.Sigmoid())
        return _run(model, (x, y), "adam", 3e-3, loss=_bce, steps=120, seed=seed)
    return build


def frozen(build_fn: Callable[..., Run], n: int) -> Callable[..., Run]:
    """Freeze the first ``n`` Linear layers (fine-tuning style): grad_norm null, not vanishing."""
    def build(seed: int = 0) -> Run:
        r = build_fn(seed)
        lins = [m for m in r.model.modules() if isinstance(m, nn.Linear)]
        for m in lins[:n]:
            m.requires_grad_(False)
        r.optimizer = _opt(r.model, "adam", 1e-3)
        return r
    return build


def kill_units(build_fn: Callable[..., Run], frac: float, layers: slice = slice(0, -1),
               kind: type = nn.Linear, name: str = ""):
    """Give ``frac`` of the units of the chosen hidden layers a bias of -20: never active."""
    def build(seed: int = 0) -> Run:
        r = build_fn(seed)
        mods = [m for n, m in r.model.named_modules() if isinstance(m, kind) and name in n][layers]
        with torch.no_grad():
            for m in mods:
                k = int(round(frac * m.bias.numel()))
                m.bias[:k] = -20.0
        return r
    return build


def amp_overflow(build_fn: Callable[..., Run]) -> Callable[..., Run]:
    """AMP with a GradScaler where every 10th step overflows (inf gradients, as float16 does at
    a too-high loss scale): the scaler skips those steps and halves its scale."""
    def build(seed: int = 0) -> Run:
        r = build_fn(seed)
        r.scaler = torch.amp.GradScaler("cpu")
        r.overflow_every = 10
        return r
    return build


def recurrent_gain(gain: float):
    def post(model: nn.Module) -> None:
        core = next(m for m in model.modules() if isinstance(m, nn.RNNBase))
        with torch.no_grad():
            for name, p in core.named_parameters():
                if name.startswith("weight_hh"):
                    nn.init.orthogonal_(p, gain=gain)
    return post


def _s(name, arch, fault, expected, build, why=""):
    return Scenario(name, arch, fault, frozenset(expected), build, why)


V, E, N, D, S, ST, P, PI = TRAINING_CODES

SCENARIOS: list[Scenario] = [
    # ------------------------------------------------------------ healthy controls
    _s("mlp4-relu-he-adam", "mlp", "none", [], mlp_run(depth=4, init="he")),
    _s("mlp8-relu-he-sgd", "mlp", "none", [], mlp_run(depth=8, init="he", opt="sgd", lr=0.02)),
    _s("mlp8-relu-he-mnist1d", "mlp", "none", [], mlp_run(mnist1d_flat, depth=8, init="he", lr=3e-3)),
    _s("mlp20-relu-he-bn-sgd", "mlp", "none", [],
       mlp_run(depth=20, init="he", norm="batch", opt="sgd", lr=0.02)),
    _s("mlp4-tanh-xavier-sgd", "mlp", "none", [],
       mlp_run(depth=4, activation="tanh", init="xavier", opt="sgd", lr=0.05)),
    _s("mlp6-gelu-layernorm", "mlp", "none", [],
       mlp_run(mnist1d_flat, depth=6, activation="gelu", norm="layer", init="he", lr=3e-3)),
    _s("mlp20-relu-residual-bn", "mlp", "none", [], mlp_run(depth=20, init="he", residual="plain", norm="batch")),
    _s("mlp20-relu-rezero", "mlp", "none", [], mlp_run(depth=20, init="he", residual="rezero")),
    _s("mlp6-leaky-he-sgd", "mlp", "none", [],
       mlp_run(depth=6, activation="leaky_relu", init="he", opt="sgd", lr=0.05)),
    _s("mlp3-sigmoid-xavier-adam", "mlp", "none", [],
       mlp_run(depth=3, activation="sigmoid", init="xavier", lr=3e-3)),
    _s("mlp4-relu-sigmoid-output", "mlp", "none", [], binary_sigmoid_head(),
       "final sigmoid is the output unit (BCE), saturating there is the goal"),
    _s("mlp6-relu-frozen-first2", "mlp", "none", [], frozen(mlp_run(depth=6, init="he"), 2),
       "frozen layers have no gradient, which is not vanishing"),
    _s("resnet8-bn-sgd", "resnet", "none", [], cnn_run(depth=8)),
    _s("resnet8-bn-adam", "resnet", "none", [], cnn_run(depth=8, opt="adam", lr=1e-3)),
    _s("resnet14-bn-adam", "resnet", "none", [], cnn_run(depth=14, opt="adam", lr=1e-3)),
    _s("plaincnn8-bn-sgd", "cnn", "none", [], cnn_run(depth=8, kind="plain")),
    _s("lstm-digits-rows", "lstm", "none", [], seq_run("lstm")),
    _s("gru-digits-rows", "gru", "none", [], seq_run("gru")),
    _s("rnn-digits-rows", "rnn", "none", [], seq_run("rnn")),
    _s("lstm-temporal-order-T10", "lstm", "none", [], seq_run("lstm", "temporal", T=10, lr=1e-2)),
    _s("transformer-pre4", "transformer", "none", [], tf_run("pre", 4)),
    _s("transformer-pre8", "transformer", "none", [], tf_run("pre", 8)),
    _s("transformer-post2", "transformer", "none", [], tf_run("post", 2)),
    _s("transformer-rezero4", "transformer", "none", [], tf_run("rezero", 4, lr=3e-3)),
    _s("transformer-pre4-gelu-sgd", "transformer", "none", [],
       tf_run("pre", 4, opt="sgd", lr=0.02, activation="gelu")),
    _s("mlp10-sigmoid-batchnorm", "mlp", "none", [],
       mlp_run(depth=10, activation="sigmoid", norm="batch", lr=3e-3),
       "BatchNorm keeps sigmoid inputs ~N(0,1): backward gain ~0.2 / std(sigmoid) ~ 1 per layer"),
    _s("mlp4-silu-he-mnist1d", "mlp", "none", [],
       mlp_run(mnist1d_flat, depth=4, activation="silu", init="he", lr=3e-3)),
    _s("resnet20-bn-sgd", "resnet", "none", [], cnn_run(depth=20)),
    _s("gru-temporal-order-T10", "gru", "none", [], seq_run("gru", "temporal", T=10, lr=1e-2)),
    _s("plaincnn8-bn-adam", "cnn", "none", [], cnn_run(depth=8, kind="plain", opt="adam", lr=1e-3)),
    _s("mlp6-tanh-xavier-layernorm", "mlp", "none", [],
       mlp_run(depth=6, activation="tanh", init="xavier", norm="layer", lr=1e-3)),
    _s("mlp4-relu-amp-skipped-steps", "mlp", "none", [], amp_overflow(mlp_run(depth=4, init="he")),
       "skipped AMP steps (inf gradients at a too-high loss scale) are not explosions"),
    # ------------------------------------------------------------ faults
    # activation: sigmoid' <= 1/4 and default init (std 1/sqrt(3 fan_in)) -> ~0.9 orders lost per
    # layer; the input signal reaches the head as ~1e-10 of itself, so the loss cannot move.
    _s("mlp20-sigmoid-sgd", "mlp", "activation", [V, ST, P],
       mlp_run(depth=20, activation="sigmoid", opt="sgd", lr=0.1)),
    _s("mlp20-sigmoid-adam", "mlp", "activation", [V, ST, P],
       mlp_run(mnist1d_flat, depth=20, activation="sigmoid"),
       "input-side gradients ~1e-15 << Adam eps, so Adam cannot rescale them"),
    _s("mlp12-sigmoid-sgd-mnist1d", "mlp", "activation", [V, ST, P],
       mlp_run(mnist1d_flat, depth=12, activation="sigmoid", opt="sgd", lr=0.1)),
    _s("mlp16-sigmoid-xavier-sgd", "mlp", "activation+depth", [V, ST, P],
       mlp_run(depth=16, activation="sigmoid", init="xavier", opt="sgd", lr=0.1)),
    # init scale: tanh with std 0.3/sqrt(fan_in)-ish small weights -> gain ~0.3 per layer
    _s("mlp16-tanh-small-init-sgd", "mlp", "init", [V, ST, P],
       mlp_run(depth=16, activation="tanh", init=0.03, opt="sgd", lr=0.05)),
    _s("mlp12-relu-small-init-bias-sgd", "mlp", "init", [V, ST, P],
       mlp_run(depth=12, init=0.02, bias=0.05, opt="sgd", lr=0.05),
       "relu, std 0.02 (gain 0.11/layer) with a bias that keeps the forward signal alive"),
    # bias: every ReLU unit of the first layer gets -3 (pre-activations ~N(0, 0.5)): no
    # unit fires, the whole network behind it gets exactly zero gradient.
    _s("mlp4-relu-bias-3-all-dead", "mlp", "bias", [D, V, ST, P],
       mlp_run(depth=4, init="he", bias=-3.0, opt="sgd", lr=0.05)),
    _s("mlp6-relu-bias-3-adam", "mlp", "bias", [D, V, ST, P],
       mlp_run(mnist1d_flat, depth=6, init="he", bias=-3.0)),
    _s("mlp4-relu-75pct-dead", "mlp", "bias", [D], kill_units(mlp_run(depth=4, width=64, init="he", lr=3e-3), 0.75),
       "3/4 of the units of every hidden layer get bias -20; the rest carry the signal"),
    _s("mlp6-relu-90pct-dead", "mlp", "bias", [D],
       kill_units(mlp_run(depth=6, width=64, init="he", lr=3e-3), 0.9, slice(1, 3))),
    _s("mlp5-relu-60pct-dead-sgd", "mlp", "bias", [D],
       kill_units(mlp_run(depth=5, width=64, init="he", opt="sgd", lr=0.03), 0.6)),
    _s("plaincnn6-relu-80pct-dead-channels", "cnn", "bias", [D],
       kill_units(cnn_run(depth=6, kind="plain", batchnorm=False, opt="adam", lr=3e-3), 0.8,
                  slice(1, 4), nn.Conv2d)),
    _s("transformer-pre2-ffn-90pct-dead", "transformer", "bias", [D],
       kill_units(tf_run("pre", 2, lr=3e-3), 0.9, slice(None), nn.Linear, "ff.0"),
       "90% of the FFN's ReLU units get bias -20; the residual stream carries the gradient"),
    # saturation: large init scale (std 5/sqrt(fan_in) for tanh) or a +6 bias for sigmoid. The
    # tanh MLPs drawn large also carry poor-init (labelled 2026-12-01, when watch got the rule, after
    # seeing its output): weights 5x LeCun's scale and a loss still above ln 10 after 100 steps;
    # the CNN's loss falls below ln 10, and it is not labelled
    _s("mlp4-tanh-large-init", "mlp", "init", [S, PI],
       mlp_run(depth=4, activation="tanh", init=0.9, opt="adam", lr=1e-3),
       "std 0.9 on width 32: pre-activations ~N(0, 5^2), most |tanh| > 0.99"),
    _s("mlp6-tanh-large-init-mnist1d", "mlp", "init", [S, P, PI],
       mlp_run(mnist1d_flat, depth=6, activation="tanh", init=0.9, lr=1e-3),
       "saturated and with logits ~x10 too large, the loss stays within 10% of its start"),
    _s("plaincnn6-tanh-large-init", "cnn", "init", [S],
       cnn_run(depth=6, kind="plain", batchnorm=False, activation="tanh", init=0.5, opt="adam",
               lr=1e-3), "conv fan_in 72-144, std 0.5: pre-activations ~N(0, 4^2)"),
    # chaotic regime (Poole et al. 2016): tanh with std 0.9 on width 32 has a backward gain
    # sigma_w^2 n E[tanh'^2] ~ 3 per layer: gradients grow ~0.24 orders per layer towards the input
    _s("mlp20-tanh-large-init", "mlp", "init+depth", [E, S, P, PI],
       mlp_run(depth=20, activation="tanh", init=0.9, lr=1e-3),
       "chaotic and saturated, the loss stays within 15% of its start for 100 steps"),
    _s("mlp4-sigmoid-bias+6", "mlp", "bias", [S, V, ST, P],
       mlp_run(depth=4, activation="sigmoid", init="xavier", bias=6.0, opt="sgd", lr=0.1),
       "sigmoid(6+noise) ~ 0.998: outputs pinned, sigmoid' ~ 2.5e-3 per layer"),
    # learning rate: SGD far past the stability limit 2/L of the loss curvature.
    # (leaky/GELU: a ReLU net would partly die on the first huge step instead of diverging)
    _s("mlp4-leaky-lr-huge", "mlp", "learning-rate", [E, N],
       mlp_run(depth=4, activation="leaky_relu", init="he", opt="plain-sgd", lr=30.0)),
    _s("mlp4-gelu-lr-huge", "mlp", "learning-rate", [E, N],
       mlp_run(depth=4, activation="gelu", init="he", opt="sgd", lr=10.0)),
    _s("gru-adding-lr-huge", "gru", "learning-rate", [E, N],
       seq_run("gru", "adding", T=20, opt="sgd", lr=50.0)),
    _s("lstm-adding-lr-huge", "lstm", "learning-rate", [E, N],
       seq_run("lstm", "adding", T=20, opt="sgd", lr=100.0)),
    _s("transformer-pre2-lr-huge", "transformer", "learning-rate", [E, N],
       tf_run("pre", 2, opt="sgd", lr=5.0)),
    _s("plaincnn8-nobn-lr-huge", "cnn", "learning-rate", [E, N],
       cnn_run(depth=8, kind="plain", batchnorm=False, opt="plain-sgd", lr=20.0)),
    # a numerical bug, no explosion: log of a softmax that underflows to exactly 0
    _s("mlp4-log-softmax-underflow", "mlp", "loss", [N],
       mlp_run(depth=4, init="he", loss=_log_softmax_bug),
       "logits x1000: wrong-class probabilities underflow to 0 in float32, log(0) = -inf"),
    _s("mlp4-relu-lr-tiny", "mlp", "learning-rate", [P],
       mlp_run(depth=4, init="he", opt="plain-sgd", lr=1e-5)),
    _s("transformer-pre4-lr-tiny", "transformer", "learning-rate", [P], tf_run("pre", 4, lr=1e-7)),
    _s("lstm-digits-lr-tiny", "lstm", "learning-rate", [P], seq_run("lstm", lr=1e-7)),
    # sequence length: recurrent gain > 1 explodes over time; a vanilla RNN over long sequences
    # cannot carry the signal from the marked steps (Bengio et al. 1994).
    _s("relu-rnn-gain3-T50", "rnn", "init+sequence-length", [E, N],
       seq_run("rnn", "adding", T=50, nonlinearity="relu", post=recurrent_gain(3.0), opt="sgd",
               lr=0.01), "ReLU keeps about half the energy: ~2x growth per time step over 50 steps"),
    _s("rnn-adding-T100", "rnn", "sequence-length", [V, P],
       seq_run("rnn", "adding", T=100, lr=1e-3)),
    _s("rnn-temporal-order-T100", "rnn", "sequence-length", [V, P],
       seq_run("rnn", "temporal", T=100, lr=1e-3)),
    # depth without skips or normalisation, default init
    _s("plaincnn20-nobn-default-sgd", "cnn", "depth", [V, ST, P],
       cnn_run(depth=20, kind="plain", batchnorm=False, init=0.02, opt="sgd", lr=0.05),
       "20 plain conv layers, std 0.02 (fan_in 72-288: gain ~0.2-0.4 per layer)"),
]


def by_name(name: str) -> Scenario:
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; known: {[s.name for s in SCENARIOS]}")


def healthy() -> list[Scenario]:
    return [s for s in SCENARIOS if not s.expected]


assert all(c in TRAINING_CODES for s in SCENARIOS for c in s.expected)
