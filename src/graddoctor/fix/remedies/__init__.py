"""The remedy registry: remedy id -> a pure function ``model -> (new_model, Change)``.

Every remedy takes ``(model, example_inputs=None, *, inplace=False, optimizer=None,
mmap=None, **options)``, deep-copies the model unless ``inplace=True`` and returns the new
model with a ``Change`` saying what it did, to which modules, and why. ``mmap`` is the
``ModelMap`` of the model on ``example_inputs`` when the caller already has one (``repair``
shares one map along the plan: a remedy that keeps the map exact returns it as
``change.mmap``, and a remedy that keeps the structure, ``Remedy.keeps_map``, leaves it valid).

| id | module | what |
|---|---|---|
| relu, leaky-relu, gelu, elu, silu | activation.py | swap saturating hidden activation modules (leaky-relu also plain ReLU) |
| he-init, xavier-init, orthogonal-init, lsuv-init | init.py | re-draw Linear/Conv weights for the activation that follows |
| batchnorm | norm.py | insert BatchNorm after hidden Linear/Conv layers |
| layernorm, groupnorm | norm.py | replace BatchNorm if the model has any, else insert after hidden layers |
| residual, rezero | residual.py | skip connections around the blocks of Sequential chains |
| clip-norm, clip-value, clip-agc | clip.py | gradient clipping as an optimizer step pre-hook |
| lstm, lower-lr, lr-find | advice.py | recommendations (code change / advice) |

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor import remedies
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
    >>> new, change = remedies.apply("relu", net, torch.randn(2, 4))
    >>> type(new[1]).__name__, type(net[1]).__name__, change.remedy
    ('ReLU', 'Sigmoid', 'relu')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from graddoctor.codes import REMEDY_IDS
from graddoctor.errors import InputError
from graddoctor.fix.remedies import activation as activation
from graddoctor.fix.remedies import advice as advice
from graddoctor.fix.remedies import clip as clip
from graddoctor.fix.remedies import init as init
from graddoctor.fix.remedies import norm as norm
from graddoctor.fix.remedies import residual as residual
from graddoctor.fix.remedies.base import Change

RemedyFn = Callable[..., tuple[nn.Module, Change]]


@dataclass(frozen=True)
class Remedy:
    """A registry entry: id, function, family, whether it needs example inputs, one-line summary,
    whether the model's structure (modules and data flow, hence its ``ModelMap``) stays as is."""

    id: str
    fn: RemedyFn
    family: str
    needs_inputs: bool
    summary: str
    keeps_map: bool = False


REMEDIES: dict[str, Remedy] = {}


def register(rid: str, family: str, summary: str, needs_inputs: bool = False,
             keeps_map: bool = False) -> Callable[[RemedyFn], RemedyFn]:
    """Decorator: register ``fn(model, example_inputs, *, inplace, optimizer, mmap, **options)``
    as ``rid`` (``keeps_map``: it changes no module and no data flow: re-init, hooks, advice).

    Example:
        >>> @register("my-fix", "custom", "does nothing")
        ... def my_fix(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None):
        ...     return model, Change("my-fix", [], "nothing to do", "advice")
        >>> get("my-fix").family
        'custom'
        >>> del REMEDIES["my-fix"]
    """

    def deco(fn: RemedyFn) -> RemedyFn:
        REMEDIES[rid] = Remedy(rid, fn, family, needs_inputs, summary, keeps_map)
        return fn

    return deco


def get(rid: str) -> Remedy:
    """The registry entry for ``rid`` (one-line InputError listing the known ids otherwise)."""
    try:
        return REMEDIES[rid]
    except KeyError:
        raise InputError(f"unknown remedy {rid!r}; known: {', '.join(REMEDIES)}") from None


def apply(rid: str, model: nn.Module, example_inputs: Any = None, *, inplace: bool = False,
          optimizer: Any = None, mmap: Any = None, **options: Any) -> tuple[nn.Module, Change]:
    """Run remedy ``rid`` on ``model``; returns ``(new_model, change)``.

    ``mmap``: the ``ModelMap`` of ``model`` on ``example_inputs``, if already built (saves a trace).
    """
    return get(rid).fn(model, example_inputs, inplace=inplace, optimizer=optimizer, mmap=mmap,
                       **options)


# ---------------------------------------------------------------- the built-in remedies


def _activation(rid: str) -> None:
    @register(rid, "activation", f"swap saturating hidden activations for {rid}")
    def fn(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None, **kw):  # noqa: ANN001, ANN202
        return activation.swap_activation(model, rid, example_inputs, inplace=inplace, mmap=mmap,
                                          **kw)


def _init(rid: str) -> None:
    @register(rid, "init", f"re-initialise Linear/Conv weights with {rid}",
              needs_inputs=rid == "lsuv-init", keeps_map=True)
    def fn(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None, **kw):  # noqa: ANN001, ANN202
        return init.reinit(model, rid, example_inputs, inplace=inplace, mmap=mmap, **kw)


for _rid in activation.FACTORIES:
    _activation(_rid)
for _rid in init.SCHEMES:
    _init(_rid)


@register("batchnorm", "norm", "insert BatchNorm after hidden Linear/Conv layers", needs_inputs=True)
def _batchnorm(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
               **kw):  # noqa: ANN001, ANN202
    return norm.insert_norm(model, "batch", example_inputs, inplace=inplace, mmap=mmap, **kw)


def _replace_or_insert(rid: str, kind: str) -> None:
    @register(rid, "norm", f"replace BatchNorm by {rid}, or insert {rid} after hidden layers",
              needs_inputs=True)
    def fn(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None, **kw):  # noqa: ANN001, ANN202
        if norm.has_batchnorm(model):
            return norm.replace_batchnorm(model, kind, example_inputs, inplace=inplace, mmap=mmap)
        return norm.insert_norm(model, kind, example_inputs, inplace=inplace, mmap=mmap, **kw)


_replace_or_insert("layernorm", "layer")
_replace_or_insert("groupnorm", "group")


@register("residual", "skip", "identity/projection shortcuts around Sequential blocks", True)
def _residual(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
              **kw):  # noqa: ANN001, ANN202
    return residual.add_residual(model, example_inputs, inplace=inplace, mmap=mmap, **kw)


@register("rezero", "skip", "shortcuts with a zero-initialised gain (ReZero)", True)
def _rezero(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
            **kw):  # noqa: ANN001, ANN202
    return residual.add_residual(model, example_inputs, rezero=True, inplace=inplace, mmap=mmap,
                                 **kw)


def _clip(rid: str) -> None:
    @register(rid, "clip", f"gradient clipping ({clip.MODES[rid]}) as an optimizer step pre-hook",
              keeps_map=True)
    def fn(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None, **kw):  # noqa: ANN001, ANN202
        return clip.clip(model, rid, optimizer=optimizer, inplace=inplace, **kw)


for _rid in clip.MODES:
    _clip(_rid)


@register("lstm", "advice", "replace a vanilla RNN by an LSTM (code change)", keeps_map=True)
def _lstm(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
          **kw):  # noqa: ANN001, ANN202
    return advice.lstm(model, inplace=inplace, **kw)


@register("lower-lr", "advice", "divide the learning rate by 10", keeps_map=True)
def _lower_lr(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
              **kw):  # noqa: ANN001, ANN202
    return advice.lower_lr(model, optimizer=optimizer, inplace=inplace, **kw)


@register("lr-find", "advice", "run an LR range test", keeps_map=True)
def _lr_find(model, example_inputs=None, *, inplace=False, optimizer=None, mmap=None,
             **kw):  # noqa: ANN001, ANN202
    return advice.lr_find(model, inplace=inplace, **kw)


assert set(REMEDY_IDS) <= set(REMEDIES), set(REMEDY_IDS) - set(REMEDIES)

__all__ = ["REMEDIES", "Change", "Remedy", "apply", "get", "register"]
