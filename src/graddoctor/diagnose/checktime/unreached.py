"""``no-gradient`` at check time: trainable layers whose data reaches the outputs but no gradient does.

The probe (``graddoctor.measure.probe_reach``) lists the layers none of whose trainable parameters
any output of the model depends on through autograd. Among them, those whose data does flow into
an output (the map's ``feeds_output``: the trace follows data through ``.detach()`` and
``torch.no_grad()``) are cut off by a ``.detach()``, a ``torch.no_grad()`` block or a
non-differentiable op: the model uses what they compute, yet no loss built from its outputs
trains them (a new-user trial: an encoder detached before its head read "no findings"). A layer
whose result the model throws away (HF BigBird's pooler under a masked-LM head) feeds no output:
dead weight, not a broken gradient path, and not reported. Layers that feed only an output the
probe's loss does not read (an auxiliary head) are on an output's graph: not listed either. A
warning, as watch's ``no-gradient``: a teacher kept trainable on purpose is legitimate, and the
message says how to mark it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.measure.probe import probe
    >>> from graddoctor.modelmap import ModelMap
    >>> class Detached(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.enc, self.head = nn.Linear(4, 8), nn.Linear(8, 2)
    ...     def forward(self, x):
    ...         return self.head(torch.relu(self.enc(x)).detach())
    >>> net, x = Detached(), torch.randn(3, 4)
    >>> m = ModelMap(net, x)
    >>> [(f.code, f.severity, f.layers) for f in no_gradient(probe(net, x, mmap=m), m)]
    [('no-gradient', 'warning', ['enc'])]
"""

from __future__ import annotations

from graddoctor.measure.probe import ProbeResult
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

REF = "Paszke et al. 2019 (NeurIPS, PyTorch: autograd records only operations on tensors that require grad)"


def no_gradient(p: ProbeResult, m: ModelMap) -> list[Finding]:
    """A warning naming the trainable layers whose data reaches an output but no gradient does, or []."""
    feeds = {x.name for x in m.layers if x.feeds_output}
    cut = [n for n in p.unreached if n in feeds]
    if not cut:
        return []
    shown = ", ".join(cut[:4]) + (f", ... (+{len(cut) - 4})" if len(cut) > 4 else "")
    msg = (f"{len(cut)} trainable layer(s) feed the model's output but get no gradient from it ({shown}): a "
           ".detach(), torch.no_grad() or non-differentiable op in the forward cuts them off, so no loss built "
           "from the outputs trains them (if that is intended, call requires_grad_(False) on them)")
    ev = {"layers_without_gradient": len(cut), "layers_on_loss_path": len(p.layers)}
    return [Finding("no-gradient", "warning", msg, layers=cut, evidence=ev, remedies=[], step=0, reference=REF)]


__all__ = ["no_gradient"]
