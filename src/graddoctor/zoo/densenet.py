"""A DenseNet-style MLP: every layer sees the concatenation of all earlier features."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.zoo.common import activation as make_activation
from graddoctor.zoo.common import choice, norm_layer, positive, seeded
from graddoctor.zoo.init import apply_init, resolve


class DenseLayer(nn.Module):
    """``cat([x, act(norm(Linear(x)))])``: the input passes through unchanged (Huang et al. 2017)."""

    def __init__(self, cin: int, growth: int, activation: str, norm: str) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, growth)
        self.norm = norm_layer(norm, growth) or nn.Identity()
        self.act = make_activation(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.act(self.norm(self.linear(x)))], dim=-1)


class DenseNet(nn.Sequential):
    """``depth - 1`` DenseLayers then an output Linear over all concatenated features."""


def densenet(depth: int = 8, growth: int = 16, in_features: int = 64, out_features: int = 10,
             activation: str = "relu", init: str | float = "default", norm: str = "none",
             seed: int = 0, std: float | None = None, bias: float | None = None) -> DenseNet:
    """A dense-connection MLP with ``depth`` Linear layers (the "dense connections" fix).

    Layer i (0-based, i < depth-1) maps ``in + i*growth`` features to ``growth``
    and appends them; the output Linear reads all ``in + (depth-1)*growth``. Every
    layer, and the head, has a path of length 1 from the input, so gradients reach
    early layers without passing through the whole stack.

    Parameter count (g = growth, F = in_features, K = out_features, L = depth-1)::

        sum_{i<L} ((F + i*g)*g + g) + (F + L*g)*K + K  (+ 2*g*L with a norm)

    Default (depth 8, g 16, 64 -> 10): 12,656 + 1,770 = 14,426.

    Example:
        >>> net = densenet(depth=3, growth=4, in_features=5, out_features=2)
        >>> net(torch.randn(2, 5)).shape
        torch.Size([2, 2])
    """
    positive("depth", depth)
    positive("growth", growth)
    positive("in_features", in_features)
    positive("out_features", out_features)
    choice("norm", norm, ("none", "batch", "layer", "group"))
    make_activation(activation)
    resolve(init, std)
    with seeded(seed):
        layers: list[nn.Module] = [DenseLayer(in_features + i * growth, growth, activation, norm)
                                   for i in range(depth - 1)]
        layers.append(nn.Linear(in_features + (depth - 1) * growth, out_features))
        model = DenseNet(*layers)
        apply_init(model, init, std=std, activation=activation, bias=bias)
    return model


def densenet_param_count(depth: int = 8, growth: int = 16, in_features: int = 64,
                         out_features: int = 10, norm: str = "none") -> int:
    """The documented parameter count of :func:`densenet`."""
    n = depth - 1
    count = sum((in_features + i * growth) * growth + growth for i in range(n))
    count += (in_features + n * growth) * out_features + out_features
    return count + (2 * growth * n if norm != "none" else 0)
