"""Broken variants, each with its ground truth measured here by plain torch (no graddoctor code).

Every entry: ``(family, build, expected_code, truth)``. ``build()`` returns ``(model, inputs)``;
``truth(model, inputs)`` returns ``(confirmed, numbers)``: the fault measured with plain autograd
or forward hooks, so a variant only counts when its fault is real on this seed.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from zoo_vision import BasicBlock, ResNet


def _x(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _seeded(fn: Callable) -> Callable:
    def build():
        torch.manual_seed(0)
        return fn()
    return build


# ---------------------------------------------------------------- plain-torch measurements


def weight_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]


def grad_ratio(model: nn.Module, x: torch.Tensor) -> dict:
    """RMS of dL/d(output) of the first weight layer over that of the last one (plain autograd,
    loss = mean(y * R), R ~ N(0, 1) seeded)."""
    layers = weight_layers(model)
    first, last = layers[0], layers[-1]
    outs: dict[nn.Module, torch.Tensor] = {}

    def keep(m: nn.Module, _a, y: torch.Tensor) -> None:
        if m not in outs:
            y.retain_grad()
            outs[m] = y
    hs = [first.register_forward_hook(keep), last.register_forward_hook(keep)]
    y = model(x)
    hs[0].remove(), hs[1].remove()
    r = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    (y * r).mean().backward()
    g0, g1 = (float(outs[m].grad.pow(2).mean().sqrt()) for m in (first, last))
    model.zero_grad(set_to_none=True)
    return {"grad_in_over_out": g0 / g1 if g1 else float("nan")}


def act_std_ratio(model: nn.Module, x: torch.Tensor) -> dict:
    """Std of the last hidden weight layer's output over the first's (forward hooks)."""
    layers = weight_layers(model)
    stds: dict[nn.Module, float] = {}

    def keep(m: nn.Module, _a, y: torch.Tensor) -> None:
        stds.setdefault(m, float(y.detach().std()))
    hs = [m.register_forward_hook(keep) for m in (layers[0], layers[-2])]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return {"act_std_last_over_first": stds[layers[-2]] / stds[layers[0]]}


def time_ratio(model: nn.Module, x: torch.Tensor) -> dict:
    """||dL/dx_0|| / ||dL/dx_{T-1}|| by plain autograd, loss from the last step's output."""
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))).mean().backward()
    g = x.grad.norm(dim=(0, 2))
    model.zero_grad(set_to_none=True)
    return {"dx0_over_dxT": float(g[0] / g[-1])}


def vanishing(model, x):
    n = grad_ratio(model, x)
    return n["grad_in_over_out"] < 1e-2, n


def collapse(model, x):
    n = act_std_ratio(model, x)
    return n["act_std_last_over_first"] < 1e-2, n


def explosion(model, x):
    n = act_std_ratio(model, x)
    return n["act_std_last_over_first"] > 1e2, n


def exploding(model, x):
    n = grad_ratio(model, x)
    return n["grad_in_over_out"] > 1e2, n


def through_time(model, x):
    n = time_ratio(model, x)
    return n["dx0_over_dxT"] < 1e-2, n


def exploding_time(model, x):
    n = time_ratio(model, x)
    return n["dx0_over_dxT"] > 1e2, n


def deep_plain(model, x):
    """Weight layers crossed by the forward (all in one chain: no module output is added back)."""
    calls = []

    def count(m: nn.Module, _a, _y) -> None:
        calls.append(m)
    hs = [m.register_forward_hook(count) for m in weight_layers(model)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    n = {"weight_layers_on_path": len(calls), **grad_ratio(model, x)}
    return len(calls) > 30, n


def bn_batch(model, x):
    seen = []

    def batch(_m: nn.Module, a) -> None:
        seen.append(a[0].shape[0])
    hs = [m.register_forward_pre_hook(batch) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return min(seen) < 8, {"bn_batch": min(seen)}


def saturation(model, x):
    """Fraction of hidden sigmoid/tanh outputs whose derivative is below 0.1 (forward hooks)."""
    fr = []

    def hook(m, a, y):
        d = 1 - y * y if isinstance(m, nn.Tanh) else y * (1 - y)
        fr.append(float((d < 0.1).float().mean()))
    acts = [m for m in model.modules() if isinstance(m, (nn.Tanh, nn.Sigmoid))]
    hs = [m.register_forward_hook(hook) for m in acts]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    n = {"saturated_frac": sum(fr) / len(fr), **grad_ratio(model, x)}
    return n["grad_in_over_out"] < 1e-1, n


# ---------------------------------------------------------------- the variants


def mlp(depth: int, act: type, width: int = 64, init: Callable | None = None, bias: float | None = None,
        d_in: int = 32) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        lin = nn.Linear(d_in if i == 0 else width, width)
        if init:
            init(lin.weight)
        if bias is not None:
            nn.init.constant_(lin.bias, bias)
        layers += [lin, act()]
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def sigmoid_everywhere():
    return mlp(20, nn.Sigmoid), _x(32, 32)


def tiny_init():
    return mlp(12, nn.ReLU, init=lambda w: nn.init.normal_(w, std=1e-3)), _x(32, 32)


def tiny_init_no_bias():
    return mlp(12, nn.ReLU, init=lambda w: nn.init.normal_(w, std=1e-3), bias=0.0), _x(32, 32)


def plain_60():
    return mlp(60, nn.ReLU, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")), _x(32, 32)


def dead_relu():
    return mlp(8, nn.ReLU, init=lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"), bias=-20.0), _x(32, 32)


def huge_init():
    return mlp(10, nn.ReLU, init=lambda w: nn.init.normal_(w, std=1.0)), _x(32, 32)


class VanillaRNN(nn.Module):
    def __init__(self, nonlinearity: str = "tanh", gain: float | None = None) -> None:
        super().__init__()
        self.rnn = nn.RNN(4, 32, batch_first=True, nonlinearity=nonlinearity)
        if gain is not None:
            nn.init.orthogonal_(self.rnn.weight_hh_l0, gain=gain)
        self.fc = nn.Linear(32, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.rnn(x)[0][:, -1])


def rnn_500():
    return VanillaRNN(), _x(4, 500, 4)


def relu_rnn_gain3():
    return VanillaRNN("relu", gain=3.0), _x(4, 60, 4)


def bn_batch2():
    return ResNet(BasicBlock, [1, 1, 1, 1], zero_init_residual=False), _x(2, 3, 32, 32)


def unnormalised_residual():
    """20 residual blocks x + f(x), f = Linear-ReLU-Linear at He init, no norm, no branch scaling."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64)
            for lin in (self.fc1, self.fc2):
                nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.fc2(self.act(self.fc1(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Linear(32, 64)
            self.blocks = nn.Sequential(*[Block() for _ in range(20)])
            self.head = nn.Linear(64, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.blocks(self.stem(x)))

    return Net(), _x(32, 32)


def default_init_plain_cnn():
    """40 plain 3x3 convs + ReLU at PyTorch's default init (std 1/sqrt(3 fan_in)), no norm, no skip."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1), nn.ReLU()]
    for _ in range(39):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 64, 10)), _x(8, 3, 8, 8)


def sigmoid_lenet():
    """A LeNet-style CNN with sigmoid after every conv, 8 convs deep, default init."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, padding=1), nn.Sigmoid()]
    for _ in range(7):
        layers += [nn.Conv2d(16, 16, 3, padding=1), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(16 * 64, 10)), _x(8, 3, 8, 8)


def tanh_deep_default():
    """A 16-layer tanh MLP at PyTorch's default init (gain 1/sqrt(3) per layer)."""
    return mlp(16, nn.Tanh), _x(32, 32)


def one_hot_attention(model, x):
    """Mean largest attention weight of the first layer's heads (plain ``need_weights=True``): a
    softmax that is nearly one-hot (>= 0.9) passes almost no gradient to the query/key weights."""
    att = model.layers[0].self_attn
    with torch.no_grad():
        p = att(x, x, x, need_weights=True, average_attn_weights=False)[1]
    top = float(p.max(-1).values.mean())
    return top >= 0.9, {"mean_top_attention": round(top, 3)}


def transformer_std1():
    """``nn.TransformerEncoder`` (d=32, 2 layers) with every weight matrix drawn N(0, 1)."""
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), 2,
                                enable_nested_tensor=False)
    with torch.no_grad():
        for p in enc.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.0)
    return enc, _x(8, 16, 32)


BROKEN: dict[str, tuple[str, Callable, str, Callable]] = {
    "transformer-std1": ("transformer", _seeded(transformer_std1), "poor-init", one_hot_attention),
    "mlp20-sigmoid-everywhere": ("mlp", _seeded(sigmoid_everywhere), "vanishing-gradient", vanishing),
    "mlp12-relu-std1e-3": ("mlp", _seeded(tiny_init), "vanishing-gradient", vanishing),
    "mlp12-relu-std1e-3-zero-bias": ("mlp", _seeded(tiny_init_no_bias), "signal-collapse", collapse),
    "mlp60-relu-plain": ("mlp", _seeded(plain_60), "deep-without-skip", deep_plain),
    "mlp8-relu-dead-bias": ("mlp", _seeded(dead_relu), "vanishing-gradient", vanishing),
    "mlp10-relu-std1": ("mlp", _seeded(huge_init), "signal-explosion", explosion),
    "rnn-tanh-T500": ("rnn", _seeded(rnn_500), "long-sequence-rnn", through_time),
    "rnn-relu-gain3-T60": ("rnn", _seeded(relu_rnn_gain3), "exploding-gradient", exploding_time),
    "resnet10-bn-batch2": ("resnet", _seeded(bn_batch2), "small-batch-batchnorm", bn_batch),
    "resmlp20-no-norm": ("resnet", _seeded(unnormalised_residual), "signal-explosion", explosion),
    "cnn40-default-init": ("cnn", _seeded(default_init_plain_cnn), "vanishing-gradient", vanishing),
    "cnn8-sigmoid": ("cnn", _seeded(sigmoid_lenet), "saturating-hidden-activation", saturation),
    "mlp16-tanh-default": ("mlp", _seeded(tanh_deep_default), "saturating-hidden-activation", saturation),
}

#: every code each variant's mechanism makes true (the expected code first), written from the
#: mechanism: a too-small/large weight scale is ``poor-init``, a plain chain over 30 layers is
#: ``deep-without-skip``, a measured input/output gradient ratio beyond 100x is vanishing/exploding
LABELS: dict[str, set[str]] = {
    "transformer-std1": {"poor-init", "exploding-gradient", "signal-explosion"},
    "mlp20-sigmoid-everywhere": {"vanishing-gradient", "saturating-hidden-activation", "poor-init"},
    "mlp12-relu-std1e-3": {"vanishing-gradient", "poor-init"},
    "mlp12-relu-std1e-3-zero-bias": {"signal-collapse", "vanishing-gradient", "poor-init"},
    "mlp60-relu-plain": {"deep-without-skip"},
    "mlp8-relu-dead-bias": {"vanishing-gradient"},
    "mlp10-relu-std1": {"signal-explosion", "exploding-gradient", "poor-init"},
    "rnn-tanh-T500": {"long-sequence-rnn", "vanishing-gradient"},
    "rnn-relu-gain3-T60": {"exploding-gradient"},
    "resnet10-bn-batch2": {"small-batch-batchnorm"},
    "resmlp20-no-norm": {"signal-explosion", "exploding-gradient"},
    "cnn40-default-init": {"vanishing-gradient", "deep-without-skip", "poor-init"},
    "cnn8-sigmoid": {"saturating-hidden-activation", "vanishing-gradient"},
    "mlp16-tanh-default": {"saturating-hidden-activation", "vanishing-gradient", "poor-init"},
}
