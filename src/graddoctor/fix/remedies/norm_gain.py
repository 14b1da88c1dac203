"""``norm-gain``: normalisation gains that are zero or near zero set to 1, every other weight kept.

A LayerNorm/RMSNorm/BatchNorm gain of 0 outputs 0 whatever comes in, so nothing behind it gets a
gradient. Where the branch after it reads the gain only to second order (a SwiGLU MLP:
``silu(W_g (g x)) * W_u (g x)``), dL/dg is 0 at g = 0 too, and no optimiser ever moves it
(``graddoctor.measure.probe_zero``). The standard init of a gain is 1 (Ba et al. 2016; Zhang &
Sennrich 2019): this remedy writes it into the zero gains, and nothing else moves, so it is
warm-start safe. Gains are read in effect (``measure.norm_scale.effective_gain``): a gain
parametrised as ``1 + w`` (Gemma's RMSNorm) is zero at w = -1, not at w = 0, and is set to w = 0.
Gains drawn near zero (HF's MobileViT: N(0, 0.02)) are found by check's ``poor-init``
(``diagnose.checktime.norm_gains``) and reset the same way.

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
from graddoctor.measure.norm_scale import effective_gain, probe_shape
from graddoctor.modelmap.records import layer_kind

#: an effective gain below this is near zero (``near_zero_gains``)
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
    """The norms among ``layers`` (None: all) whose effective gain (``measure.norm_scale``: a
    ``1 + w`` gain at w = -1 reads 0) is below ``NEAR_ZERO``; the gain vector's RMS where the layer
    cannot be called on a probe input.

    Example:
        >>> net = nn.Sequential(nn.LayerNorm(3), nn.LayerNorm(3))
        >>> _ = nn.init.constant_(net[1].weight, 0.01)
        >>> near_zero_gains(net, ["0", "1"]), near_zero_gains(net, None)
        (['1'], ['1'])
    """
    mods = dict(model.named_modules())
    names = [n for n in (layers if layers is not None else mods) if n in mods and is_norm(mods[n])]
    return [n for n in names if _gain(mods[n]) < NEAR_ZERO]


def _gain(m: nn.Module) -> float:
    g = effective_gain(m, probe_shape(m))
    return g if g is not None else float(m.weight.detach().float().pow(2).mean().sqrt())


def unit_gain(m: nn.Module) -> None:
    """Set ``m``'s gain to 1 in effect: its weight to 1, or to 0 where the layer scales by ``1 + w``
    (Gemma's RMSNorm reads a gain of 2 at w = 1).

    Example:
        >>> ln = nn.LayerNorm(4); _ = nn.init.zeros_(ln.weight); unit_gain(ln); ln.weight.tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    with torch.no_grad():
        m.weight.fill_(1.0)
        g = effective_gain(m, probe_shape(m))
        if g is not None and abs(g - 2.0) < 0.5:
            m.weight.fill_(0.0)


@register("norm-gain", family="init", keeps_map=True,
          summary="normalisation gains at or near zero set to 1, other weights kept")
def norm_gain(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Set the zero and near-zero gains (``near_zero_gains``) of the normalisation modules in
    ``layers`` (None: all of them) to 1 in effect (``unit_gain``).

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
    zero = set(near_zero_gains(new, layers))  # (exact zeros read 0 too; Gemma's w = 0 reads 1)
    names = [n for n in (sorted(zero) if layers is None else layers) if n in zero]
    mods = dict(new.named_modules())
    for n in names:
        unit_gain(mods[n])
    why = ("a normalisation gain at or near 0 scales its output to (near) 0, so nothing behind it gets "
           "a gradient (and a gated branch such as SwiGLU never moves an exact 0): the standard gain is 1")
    if not names:
        return new, Change("norm-gain", [], "no normalisation gain is at or near zero: " + why, "advice")
    return new, Change("norm-gain", names, why, "applied", {"gain": 1.0})
