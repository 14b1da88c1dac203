"""Weight initialisation schemes for zoo models: default/normal/uniform/xavier/he/orthogonal.

Applied to every Linear and Conv layer (weights; biases set to 0, or to ``bias``).

- ``default``: PyTorch's own init (Kaiming-uniform with a=sqrt(5)); biases untouched
  unless ``bias`` is given.
- ``normal``: N(0, std^2) ("small random numbers"; ``std`` default 0.01).
  A float for ``init`` means ``normal`` with that std.
- ``uniform``: U[-a, a] with a = 1/sqrt(fan_in) (the "standard" init of Glorot &
  Bengio 2010, eq. 1), or a = ``std`` * sqrt(3) when ``std`` is given.
- ``xavier``: Glorot & Bengio 2010 normalized init, U with Var = 2/(fan_in+fan_out).
- ``he``: He et al. 2015, N(0, 2/fan_in) (fan-in mode, ReLU gain; leaky slope if given).
- ``orthogonal``: Saxe et al. 2014, orthogonal matrix times the activation's gain.

Example:
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
    >>> _ = apply_init(net, "normal", std=0.5)
    >>> net[0].bias.detach().abs().sum().item()
    0.0
"""

from __future__ import annotations

import math

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.errors import InputError
from graddoctor.zoo.common import choice

INITS = ("default", "normal", "uniform", "xavier", "he", "orthogonal")


def resolve(init: str | float, std: float | None = None) -> tuple[str, float | None]:
    """Normalise ``init`` (a name or a float std) to ``(scheme, std)``; InputError if unknown."""
    if isinstance(init, (int, float)) and not isinstance(init, bool):
        if init <= 0:
            raise InputError(f"init={init!r}: a numeric init is a normal std and must be > 0")
        return "normal", float(init)
    choice("init", init, INITS)
    if std is not None and (not isinstance(std, (int, float)) or std <= 0):
        raise InputError(f"std={std!r} must be a positive number")
    if std is not None and init not in ("normal", "uniform"):
        raise InputError(f"std={std!r} applies to init='normal' or 'uniform', not init={init!r} (which would "
                         f"ignore it) - pass init='normal', std={std!r}")
    return init, std


def apply_init(model: nn.Module, init: str | float = "default", std: float | None = None,
               activation: str = "relu", bias: float | None = None) -> nn.Module:
    """Initialise every Linear/Conv weight of ``model`` in place with ``init``; returns ``model``.

    Args:
        init: scheme name (see module doc) or a float std meaning ``normal``.
        std: std for ``normal`` (default 0.01) or ``uniform``.
        activation: the hidden activation: ``orthogonal`` scales by its gain (``kinds.gain``;
            an unknown name counts as ``relu``); ``he`` uses the leaky-ReLU gain for
            ``leaky_relu`` and the ReLU gain otherwise (``kinds.target_std``).
        bias: constant for every bias (e.g. -3 to kill ReLUs); default 0 (``default``: untouched).
    """
    scheme, std = resolve(init, std)
    kind = activation if activation in kinds.KINDS else "relu"
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
                continue
            w = m.weight
            fan_in = w[0].numel()
            if scheme == "normal":
                nn.init.normal_(w, 0.0, 0.01 if std is None else std)
            elif scheme == "uniform":
                a = 1 / math.sqrt(fan_in) if std is None else std * math.sqrt(3)
                nn.init.uniform_(w, -a, a)
            elif scheme == "xavier":
                nn.init.xavier_uniform_(w)
            elif scheme == "he":
                nn.init.normal_(w, 0.0, kinds.target_std(fan_in, "leaky_relu" if kind == "leaky_relu" else "relu"))
            elif scheme == "orthogonal":
                nn.init.orthogonal_(w, gain=kinds.gain(kind))
            if m.bias is not None and (scheme != "default" or bias is not None):
                m.bias.fill_(0.0 if bias is None else float(bias))
    return model
