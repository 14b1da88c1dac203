"""The activation kinds: one record per kind, the only place that knows activation facts.

Every module that needs a fact about an activation (its family, output bounds, the
variance-preserving gain, when an output counts as saturated, whether an output of 0
means "inactive") asks this registry. The target weight scale of an init, used by the
``poor-init`` rule, the init remedies and the zoo alike, is ``target_std``.

Families: ``"relu"`` (piecewise linear or non-saturating on one side: the ReLU family,
GELU, SiLU, ...) and ``"saturating"`` (bounded on both sides: sigmoid, tanh, ...).

Example:
    >>> import torch
    >>> from graddoctor import kinds
    >>> kinds.get("tanh").family, kinds.get("tanh").bounds, round(kinds.get("tanh").gain, 4)
    ('saturating', (-1.0, 1.0), 1.6667)
    >>> kinds.of_module(torch.nn.LeakyReLU()), kinds.family("gelu")
    ('leaky_relu', 'relu')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: tanh/softsign outputs with |y| above this count as saturated
TANH_SAT = 0.99
#: sigmoid (and hardsigmoid) outputs outside [SIGMOID_LO, 1 - SIGMOID_LO] count as saturated
SIGMOID_LO = 0.01
#: default negative slope of a leaky ReLU (torch's default)
LEAKY_SLOPE = 0.01

_INF = math.inf
_RELU_GAIN = math.sqrt(2.0)


@dataclass(frozen=True)
class Kind:
    """The facts about one activation kind.

    Args:
        name: the kind's id (``"relu"``, ``"sigmoid"``, ...).
        family: ``"relu"`` or ``"saturating"``.
        modules: torch module classes of this kind.
        bounds: output range (lower, upper).
        gain: variance-preserving gain of the layer before it (He et al. 2015; torch's
            ``calculate_gain`` where it has one).
        saturated: the saturation test (a boolean mask of outputs at the bounds), or None.
        dies: a unit whose output stays at 0 is dead (only ``relu``/``relu6``: leaky ReLU,
            ELU, GELU and SiLU still pass a gradient).
        nonnegative: outputs are never negative (an active unit has output > 0).
    """

    name: str
    family: str
    modules: tuple[type[nn.Module], ...]
    bounds: tuple[float, float] = (-_INF, _INF)
    gain: float = 1.0
    saturated: Callable[[torch.Tensor], torch.Tensor] | None = None
    dies: bool = False
    nonnegative: bool = False


def _tanh_sat(x: torch.Tensor) -> torch.Tensor:
    return x.abs() > TANH_SAT


def _sigmoid_sat(x: torch.Tensor) -> torch.Tensor:
    return (x - 0.5).abs() > 0.5 - SIGMOID_LO


def _hardtanh_sat(x: torch.Tensor) -> torch.Tensor:
    return x.abs() >= 1.0


def _hardsigmoid_sat(x: torch.Tensor) -> torch.Tensor:
    return (x <= 0) | (x >= 1)


def _logsigmoid_sat(x: torch.Tensor) -> torch.Tensor:
    return x > math.log(1 - SIGMOID_LO)  # the flat side


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("relu", "relu", (nn.ReLU,), (0.0, _INF), _RELU_GAIN, dies=True, nonnegative=True),
    Kind("relu6", "relu", (nn.ReLU6,), (0.0, 6.0), _RELU_GAIN, dies=True, nonnegative=True),
    Kind("leaky_relu", "relu", (nn.LeakyReLU,), gain=math.sqrt(2.0 / (1 + LEAKY_SLOPE**2))),
    Kind("prelu", "relu", (nn.PReLU,), gain=_RELU_GAIN),
    Kind("rrelu", "relu", (nn.RReLU,), gain=_RELU_GAIN),
    Kind("elu", "relu", (nn.ELU,), (-1.0, _INF), _RELU_GAIN),
    Kind("selu", "relu", (nn.SELU,), gain=0.75),
    Kind("celu", "relu", (nn.CELU,), gain=_RELU_GAIN),
    Kind("gelu", "relu", (nn.GELU,), gain=_RELU_GAIN),
    Kind("silu", "relu", (nn.SiLU,), gain=_RELU_GAIN),
    Kind("mish", "relu", (nn.Mish,), gain=_RELU_GAIN),
    Kind("hardswish", "relu", (nn.Hardswish,), gain=_RELU_GAIN),
    Kind("softplus", "relu", (nn.Softplus,), (0.0, _INF), _RELU_GAIN, nonnegative=True),
    Kind("sigmoid", "saturating", (nn.Sigmoid,), (0.0, 1.0), 1.0, _sigmoid_sat, nonnegative=True),
    Kind("tanh", "saturating", (nn.Tanh,), (-1.0, 1.0), 5 / 3, _tanh_sat),
    Kind("hardtanh", "saturating", (nn.Hardtanh,), (-1.0, 1.0), 5 / 3, _hardtanh_sat),
    Kind("hardsigmoid", "saturating", (nn.Hardsigmoid,), (0.0, 1.0), 1.0, _hardsigmoid_sat,
         nonnegative=True),
    Kind("softsign", "saturating", (nn.Softsign,), (-1.0, 1.0), 1.0, _tanh_sat),
    Kind("logsigmoid", "saturating", (nn.LogSigmoid,), (-_INF, 0.0), 1.0, _logsigmoid_sat),
)}

#: kind -> family, for the code that only needs the family
FAMILY: dict[str, str] = {k.name: k.family for k in KINDS.values()}
#: kinds whose units die (output stuck at 0 passes no gradient)
DYING: frozenset[str] = frozenset(k.name for k in KINDS.values() if k.dies)
#: kinds whose output is never negative
NONNEGATIVE: frozenset[str] = frozenset(k.name for k in KINDS.values() if k.nonnegative)
#: ReLU-family kinds with non-negative output (relu, relu6, softplus): a unit is active when > 0
RECTIFIED: frozenset[str] = frozenset(k for k in NONNEGATIVE if FAMILY[k] == "relu")
#: tanh-like kinds (zero-centred, bounded): Glorot/orthogonal init keeps them trainable
TANH_LIKE: frozenset[str] = frozenset({"tanh", "hardtanh", "softsign"})

_BY_MODULE: dict[type, str] = {m: k.name for k in KINDS.values() for m in k.modules}

#: class-name fragments of third-party activation modules (HF's GELUActivation, ...), checked in order
NAME_HINTS: tuple[tuple[str, str], ...] = (
    ("gelu", "gelu"), ("silu", "silu"), ("swish", "silu"), ("mish", "mish"),
    ("leakyrelu", "leaky_relu"), ("relu", "relu"), ("sigmoid", "sigmoid"), ("tanh", "tanh"),
    ("elu", "elu"),
)
#: torch modules whose names contain a hint but that are not activations of a kind above
#: (Tanhshrink is x - tanh(x): unbounded, not saturating), and name fragments that veto a hint
NOT_ACTIVATION: tuple[type[nn.Module], ...] = (nn.Tanhshrink, nn.Softshrink, nn.Hardshrink, nn.Threshold)
NAME_VETO: tuple[str, ...] = ("shrink",)

#: the module class ``repair``'s activation swap (and the zoo) builds for a kind
SWAP_MODULES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "elu": nn.ELU, "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
}


def get(name: str) -> Kind:
    """The record of kind ``name``; KeyError names the known kinds.

    Example:
        >>> get("relu").dies, get("gelu").dies
        (True, False)
    """
    try:
        return KINDS[name]
    except KeyError:
        raise KeyError(f"unknown activation kind {name!r}; known: {', '.join(KINDS)}") from None


def family(name: str | None) -> str | None:
    """The family of kind ``name`` (``"relu"`` / ``"saturating"``), None for no or unknown kind.

    Example:
        >>> family("sigmoid"), family(None), family("softmax")
        ('saturating', None, None)
    """
    return FAMILY.get(name or "")


def of_module(module: nn.Module) -> str | None:
    """The activation kind of a module (``"relu"``, ``"sigmoid"``, ...) or None.

    Torch classes (and their subclasses) are known; a third-party leaf module with at most
    scalar parameters is recognised by its class name (``GELUActivation`` -> ``"gelu"``).

    Example:
        >>> of_module(nn.Tanh()), of_module(nn.Linear(2, 2)), of_module(nn.Tanhshrink())
        ('tanh', None, None)
    """
    for cls in type(module).__mro__:
        if cls in _BY_MODULE:
            return _BY_MODULE[cls]
    if isinstance(module, NOT_ACTIVATION):
        return None
    if any(True for _ in module.children()) or any(p.numel() > 1 for p in module.parameters(recurse=False)):
        return None
    name = type(module).__name__.lower()
    if any(v in name for v in NAME_VETO):
        return None
    return next((kind for hint, kind in NAME_HINTS if hint in name), None)


def gain(name: str | None, slope: float = LEAKY_SLOPE) -> float:
    """The variance-preserving gain for the activation that follows a layer (1 for none/unknown).

    Example:
        >>> round(gain("relu"), 4), gain(None), round(gain("tanh"), 4), round(gain("leaky_relu", 0.2), 4)
        (1.4142, 1.0, 1.6667, 1.3868)
    """
    if name == "leaky_relu":
        return math.sqrt(2.0 / (1 + slope**2))
    kind = KINDS.get(name or "")
    return kind.gain if kind else 1.0


def bounds(name: str | None) -> tuple[float, float]:
    """Output range of kind ``name``; (-inf, inf) for none/unknown.

    Example:
        >>> bounds("sigmoid"), bounds("relu6")
        ((0.0, 1.0), (0.0, 6.0))
    """
    kind = KINDS.get(name or "")
    return kind.bounds if kind else (-_INF, _INF)


def saturated_mask(x: torch.Tensor, name: str) -> torch.Tensor | None:
    """Boolean mask of saturated outputs of an activation of kind ``name``, None when not bounded.

    Thresholds: tanh/softsign |y| > 0.99; sigmoid y outside [0.01, 0.99]; hardtanh at its
    clip value (|y| >= 1, the default bound); hardsigmoid y <= 0 or y >= 1; logsigmoid
    y > log(0.99) (the flat side).

    Example:
        >>> saturated_mask(torch.tensor([0.5, 0.995]), "sigmoid").tolist()
        [False, True]
    """
    kind = KINDS.get(name)
    return kind.saturated(x) if kind and kind.saturated else None


def target_std(fan_in: int, activation: str | None = "relu", slope: float = LEAKY_SLOPE) -> float:
    """The weight std that preserves the signal's scale: gain / sqrt(fan_in) (He et al. 2015).

    The one target shared by the ``poor-init`` rule, the init remedies and the zoo.

    Example:
        >>> round(target_std(256, "relu"), 4), round(target_std(256, None), 4)
        (0.0884, 0.0625)
    """
    return gain(activation, slope) / math.sqrt(fan_in)


def glorot_std(fan_in: int, fan_out: int) -> float:
    """Glorot & Bengio's normalized-init std, sqrt(2 / (fan_in + fan_out)) (no gain).

    Example:
        >>> round(glorot_std(100, 100), 3)
        0.1
    """
    return math.sqrt(2.0 / (fan_in + fan_out))


__all__ = [
    "DYING", "FAMILY", "KINDS", "Kind", "LEAKY_SLOPE", "NAME_HINTS", "NONNEGATIVE", "RECTIFIED", "SIGMOID_LO",
    "SWAP_MODULES", "TANH_LIKE", "TANH_SAT", "bounds", "family", "gain", "get", "glorot_std",
    "of_module", "saturated_mask", "target_std",
]
