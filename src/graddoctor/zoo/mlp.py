"""Multilayer perceptrons of any depth, activation, init, normalisation and residual style."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.zoo.common import activation as make_activation
from graddoctor.zoo.common import choice, norm_layer, positive, seeded
from graddoctor.zoo.init import apply_init, resolve

RESIDUALS = (None, "plain", "rezero")


class Residual(nn.Module):
    """``x + body(x)``, or ``x + alpha * body(x)`` with a zero-initialised scalar (ReZero).

    Example:
        >>> block = Residual(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), rezero=True)
        >>> bool((block(torch.ones(2, 4)) == 1).all())
        True
    """

    def __init__(self, body: nn.Module, rezero: bool = False) -> None:
        super().__init__()
        self.body = body
        self.alpha = nn.Parameter(torch.zeros(())) if rezero else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + (out if self.alpha is None else self.alpha * out)


class MLP(nn.Sequential):
    """An ``nn.Sequential`` of Linear [-> norm] -> activation blocks and an output Linear."""


def mlp(depth: int = 4, width: int = 64, in_features: int = 64, out_features: int = 10,
        activation: str = "relu", init: str | float = "default", norm: str = "none",
        residual: str | None = None, seed: int = 0, std: float | None = None,
        bias: float | None = None) -> MLP:
    """An MLP with ``depth`` Linear layers (``depth - 1`` hidden blocks and an output Linear).

    Layout (flat ``nn.Sequential``, activations are modules so they can be swapped)::

        Linear(in, width) [norm] act, {Linear(width, width) [norm] act} x (depth-2), Linear(width, out)

    With ``residual="plain"|"rezero"`` each of the ``depth-2`` width->width blocks
    becomes ``Residual(Sequential(Linear, [norm], act))`` (ReZero: a zero-init scalar gain).
    The output Linear has no activation.

    Parameter count (depth >= 2, w = width)::

        in*w + w + (depth-2)*(w*w + w) + w*out + out
        + 2*w*(depth-1)   if norm != "none"
        + (depth-2)       if residual == "rezero"

    Default config (depth 4, width 64, 64 -> 10): 4160 + 2*4160 + 650 = 13130.
    ``depth=1`` is a single Linear(in, out).

    Args:
        depth: number of Linear layers (>= 1).
        width: hidden units.
        activation: sigmoid, tanh, relu, leaky_relu, elu, gelu or silu.
        init: default, normal, uniform, xavier, he, orthogonal, or a float std (normal).
        norm: none, batch, layer or group (between each hidden Linear and its activation).
        residual: None, "plain" or "rezero".
        seed: torch seed for the weights (the global RNG is left as it was).
        std: std for ``init="normal"``/``"uniform"``.
        bias: constant initial value for every bias (e.g. -5 to make ReLUs dead).

    Example:
        >>> net = mlp(depth=3, width=8, in_features=4, out_features=2, activation="tanh")
        >>> net(torch.randn(5, 4)).shape
        torch.Size([5, 2])
    """
    positive("depth", depth)
    positive("width", width)
    positive("in_features", in_features)
    positive("out_features", out_features)
    make_activation(activation)
    choice("norm", norm, ("none", "batch", "layer", "group"))
    choice("residual", residual, RESIDUALS)
    resolve(init, std)
    with seeded(seed):
        layers: list[nn.Module] = []
        for i in range(depth - 1):
            block: list[nn.Module] = [nn.Linear(in_features if i == 0 else width, width)]
            n = norm_layer(norm, width)
            block += ([n] if n is not None else []) + [make_activation(activation)]
            if residual is not None and i > 0:
                layers.append(Residual(nn.Sequential(*block), rezero=residual == "rezero"))
            else:
                layers += block
        layers.append(nn.Linear(width if depth > 1 else in_features, out_features))
        model = MLP(*layers)
        apply_init(model, init, std=std, activation=activation, bias=bias)
    return model


def mlp_param_count(depth: int = 4, width: int = 64, in_features: int = 64, out_features: int = 10,
                    norm: str = "none", residual: str | None = None) -> int:
    """The documented parameter count of :func:`mlp` (see its docstring)."""
    if depth == 1:
        return in_features * out_features + out_features
    w = width
    count = in_features * w + w + (depth - 2) * (w * w + w) + w * out_features + out_features
    count += 2 * w * (depth - 1) if norm != "none" else 0
    count += (depth - 2) if residual == "rezero" else 0
    return count
