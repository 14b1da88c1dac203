"""``train-mode``: BatchNorm layers put back in training mode.

A BatchNorm in eval mode while the model trains normalises with its running statistics,
which nobody updates: at initialisation they are mean 0, variance 1, so the layer is a
plain affine map and the network trains as if it had no normalisation at all (Ioffe &
Szegedy 2015, sec. 3.1: batch statistics in training, population statistics at inference).
Usual causes: ``model.eval()`` before the loop and no ``model.train()``, or a helper that
freezes BatchNorm statistics on a model whose BatchNorm weights still train (it overrides the
layer's ``train`` method: that override is removed, or the layer could never train again).

Example:
    >>> import torch
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    >>> new, change = train_mode(net, None, RemedyContext("train-mode"))
    >>> new[1].training, net[1].training, change.modules
    (True, False, ['1'])
"""

from __future__ import annotations

import copy

from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register


def eval_batchnorms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers in eval mode whose parameters train (frozen ones are deliberate).

    Example:
        >>> eval_batchnorms(nn.Sequential(nn.BatchNorm1d(2)).eval())
        ['0']
    """
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.training
            and (not list(m.parameters()) or any(p.requires_grad for p in m.parameters()))]


@register("train-mode", family="norm", keeps_map=True,
          summary="BatchNorm layers in eval mode back to training mode")
def train_mode(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Put the BatchNorm layers of ``layers`` (default: every trainable one in eval mode) in
    training mode.

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: BatchNorm module names (None: ``eval_batchnorms(model)``).
        ctx: ``ctx.inplace``.

    Returns:
        ``(new_model, change)``: "applied", with the code line that keeps it so in the loop.

    Raises:
        Nothing.

    Example:
        >>> train_mode(nn.Linear(2, 2), None, RemedyContext("train-mode"))[1].modules
        []
    """
    new = model if ctx.inplace else copy.deepcopy(model)
    names = eval_batchnorms(new) if layers is None else [
        n for n in layers if isinstance(dict(new.named_modules()).get(n), nn.modules.batchnorm._BatchNorm)]
    unfrozen = []
    for n in names:
        bn = new.get_submodule(n)
        if "train" in bn.__dict__:  # a "freeze BN" helper's override: the layer could never train
            del bn.__dict__["train"]
            unfrozen.append(n)
        bn.train()
    why = ("BatchNorm in eval mode normalises with running statistics that never update while "
           "training (mean 0, variance 1 at init): the net trains as if unnormalised "
           "(Ioffe & Szegedy 2015)")
    code = "call model.train() before the training loop (and after each evaluation)"
    if unfrozen:
        why += f"; the train() override on {len(unfrozen)} of them (a 'freeze BN' helper) removed"
    return new, Change("train-mode", names, why, "applied" if names else "advice",
                       {"code": code, "overrides_removed": unfrozen})


__all__ = ["eval_batchnorms", "train_mode"]
