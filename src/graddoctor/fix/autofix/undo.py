"""Undo a fix: the model's tree, weights and train/eval flags as they were just before it.

In-place surgery only rewires children (``setattr`` on a parent writes its ``_modules``) and
re-draws weights in place, and every original module object stays alive while a
``Checkpoint`` holds it. So a checkpoint keeps, for every module of the tree, its object, its
children mapping, its ``training`` flag and its own ``train`` method override, plus a copy
of every parameter and buffer; ``restore`` writes them all back. Modules added by the fix
(ReZero wrappers, new norms) drop out of the tree; the original parameters come back (the
caller rebinds the optimizer with ``surgery.rebind_optimizer``). Memory: one copy of the
weights while a fix is on trial.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid())
    >>> cp = Checkpoint(net)
    >>> net[1] = nn.ReLU(); _ = net[0].weight.data.fill_(3.0)
    >>> restore(cp); type(net[1]).__name__, bool((net[0].weight != 3.0).any())
    ('Sigmoid', True)
"""

from __future__ import annotations

import torch
from torch import nn


class Checkpoint:
    """The tree, flags and weights of ``model`` at construction time (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        mods = list(model.modules())
        self.children = [(m, dict(m._modules)) for m in mods]
        self.training = [(m, m.training) for m in mods]
        self.overrides = [(m, m.__dict__.get("train")) for m in mods]
        tensors = {id(t): t for m in mods for t in (*m.parameters(recurse=False), *m.buffers(recurse=False))
                   if t is not None}
        with torch.no_grad():
            self.values = [(t, t.detach().clone()) for t in tensors.values()]


def restore(cp: Checkpoint) -> None:
    """Write ``cp``'s tree, flags, ``train`` overrides and weights back into its model (in place)."""
    for m, kids in cp.children:
        m._modules.clear()
        m._modules.update(kids)
    for m, flag in cp.training:
        m.training = flag
    for m, override in cp.overrides:
        if override is None:
            m.__dict__.pop("train", None)
        else:
            m.__dict__["train"] = override
    with torch.no_grad():
        for t, v in cp.values:
            if t.shape == v.shape:
                t.copy_(v)


__all__ = ["Checkpoint", "restore"]
