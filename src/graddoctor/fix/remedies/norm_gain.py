"""``norm-gain``: normalisation gains that are exactly zero (or, when named, near zero) set to 1,
every other weight kept.

A LayerNorm/RMSNorm/BatchNorm gain of 0 outputs 0 whatever comes in, so nothing behind it gets a
gradient. Where the branch after it reads the gain only to second order (a SwiGLU MLP:
``silu(W_g (g x)) * W_u (g x)``), dL/dg is 0 at g = 0 too, and no optimiser ever moves it
(``graddoctor.measure.probe_zero``). The standard init of a gain is 1 (Ba et al. 2016; Zhang &
Sennrich 2019): this remedy writes it into the zero gains, and nothing else moves, so it is
warm-start safe. A gain parametrised as ``1 + w`` (Gemma's RMSNorm) is never zero in effect and
is never found here: the probe sees its gradient flow.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    >>> _ = nn.init.zeros_(net[1].weight)
    >>> new, change = norm_gain(net, None, RemedyContext("norm-gain"))
    >>> new[1].weight.tolist(), change.modules, net[1].weight.tolist()
    ([1.0, 1.0, 1.0, 1.0], ['1'], [0.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.modelmap.records import layer_kind

#: a named gain vector with an RMS below this is near zero (``near_zero_gains``)
NEAR_ZERO = 0.1


def is_norm(module: nn.Module) -> bool:
    """A normalisation module (``modelmap.layer_kind``: torch's norms, HF's ``LlamaRMSNorm``) with a
    trainable gain vector ``weight``."""
    w = getattr(module, "weight", None)
    return isinstance(w, nn.Parameter) and w.requires_grad and w.dim() == 1 and layer_kind(module) == "norm"


def zero_gains(model: nn.Module) -> list[str]:
    """Names of the normalisation modules of ``model`` whose gain is exactly zero everywhere.

    Example:
        >>> net = nn.Sequential(nn.LayerNorm(3), nn.LayerNorm(3))
        >>> _ = nn.init.zeros_(net[1].weight)
        >>> zero_gains(net)
        ['1']
    """
    return [n for n, m in model.named_modules() if is_norm(m) and not bool(m.weight.detach().ne(0).any())]


def near_zero_gains(model: nn.Module, layers: list[str] | None) -> list[str]:
    """The norms named in ``layers`` whose gain vector has an RMS below ``NEAR_ZERO`` (drawn near 0:
    check's ``poor-init`` of norm gains names them by their effective gain); none without names.

    Example:
        >>> net = nn.Sequential(nn.LayerNorm(3), nn.LayerNorm(3))
        >>> _ = nn.init.constant_(net[1].weight, 0.01)
        >>> near_zero_gains(net, ["0", "1"]), near_zero_gains(net, None)
        (['1'], [])
    """
    mods = dict(model.named_modules())
    return [n for n in layers or [] if n in mods and is_norm(mods[n])
            and float(mods[n].weight.detach().float().pow(2).mean().sqrt()) < NEAR_ZERO]


@register("norm-gain", family="init", keeps_map=True,
          summary="normalisation gains at or near zero set to 1, other weights kept")
def norm_gain(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Set the zero gains of the normalisation modules in ``layers`` (None: all of them) to 1, and
    the near-zero ones named in ``layers`` (``near_zero_gains``).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: module names (None: ``zero_gains(model)``); modules that are no norm, or whose
            gain is not all zero, are left alone.
        ctx: ``ctx.inplace``.

    Returns:
        ``(new_model, change)``: "applied" on the gains set, "advice" when none was zero.

    Raises:
        Nothing.

    Example:
        >>> norm_gain(nn.LayerNorm(3), None, RemedyContext("norm-gain"))[1].kind
        'advice'
    """
    new = model if ctx.inplace else copy.deepcopy(model)
    zero = set(zero_gains(new)) | set(near_zero_gains(new, layers))
    names = [n for n in (sorted(zero) if layers is None else layers) if n in zero]
    mods = dict(new.named_modules())
    with torch.no_grad():
        for n in names:
            mods[n].weight.fill_(1.0)
    why = ("a normalisation gain of exactly 0 outputs 0, so nothing behind it gets a gradient (and a "
           "gated branch such as SwiGLU never moves it): the standard gain is 1")
    if not names:
        return new, Change("norm-gain", [], "no normalisation gain is exactly zero: " + why, "advice")
    return new, Change("norm-gain", names, why, "applied", {"gain": 1.0})
