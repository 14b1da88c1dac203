"""Model zoo: factories for MLPs, CNNs/ResNets, RNN/LSTM/GRU, Transformers and DenseNets.

Every factory takes keyword options and a ``seed`` (weights are deterministic,
the global RNG is left untouched) and raises a one-line ``InputError`` on a bad
option. A string registry serves the lab and the CLI.

Example:
    >>> from graddoctor import zoo
    >>> net = zoo.build("mlp", depth=20, width=64, activation="sigmoid")
    >>> len([m for m in net if isinstance(m, torch.nn.Linear)])
    20
    >>> "resnet" in zoo.names()
    True
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch  # noqa: F401  (used in the docstring example)
from torch import nn

from graddoctor.errors import InputError
from graddoctor.zoo.cnn import cnn, plain_param_count, resnet_param_count
from graddoctor.zoo.common import ACTIVATIONS, n_params
from graddoctor.zoo.densenet import densenet, densenet_param_count
from graddoctor.zoo.init import INITS, apply_init
from graddoctor.zoo.mlp import Residual, mlp, mlp_param_count
from graddoctor.zoo.rnn import rnn, rnn_param_count
from graddoctor.zoo.transformer import transformer, transformer_param_count

#: name -> factory; aliases are partial applications of the five families
registry: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn": cnn,
    "resnet": functools.partial(cnn, kind="resnet"),
    "plain-cnn": functools.partial(cnn, kind="plain"),
    "rnn": functools.partial(rnn, cell="rnn"),
    "lstm": functools.partial(rnn, cell="lstm"),
    "gru": functools.partial(rnn, cell="gru"),
    "transformer": transformer,
    "densenet": densenet,
}


def names() -> list[str]:
    """The registered model names, sorted.

    Example:
        >>> names()[:3]
        ['cnn', 'densenet', 'gru']
    """
    return sorted(registry)


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword options.

    Unknown names and options raise a one-line ``InputError`` listing what exists.

    Example:
        >>> build("lstm", input_size=2, hidden_size=8)(torch.randn(1, 4, 2)).shape
        torch.Size([1])
    """
    if name not in registry:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(names())}")
    factory = registry[name]
    params = inspect.signature(factory).parameters
    unknown = [k for k in kwargs if k not in params]
    if unknown:
        raise InputError(f"model {name!r} has no option {unknown[0]!r}; options: {', '.join(params)}")
    return factory(**kwargs)


__all__ = [
    "ACTIVATIONS", "INITS", "Residual", "apply_init", "build", "cnn", "densenet",
    "densenet_param_count", "mlp", "mlp_param_count", "n_params", "names", "plain_param_count",
    "registry",
    "resnet_param_count", "rnn", "rnn_param_count", "transformer", "transformer_param_count",
]
