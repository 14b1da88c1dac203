"""What kind of recurrence a model has: the fact the through-time probe rule is judged by.

``gd.check`` asks ``recurrence(model, m)`` and hands the answer to
``probe_rules.probe_findings``, so the rules receive what they judge and never reach
back into the verb.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> net = nn.LSTM(3, 4)
    >>> recurrence(net, ModelMap(net, torch.randn(5, 2, 3)))
    'gated'
"""

from __future__ import annotations

from torch import nn

from graddoctor.diagnose.thresholds import MIN_STEPS
from graddoctor.modelmap import ModelMap

#: torch's recurrent modules without gates (Bengio, Simard & Frasconi 1994) and with them
#: (Hochreiter & Schmidhuber 1997; Cho et al. 2014)
VANILLA_MODULES = (nn.RNN, nn.RNNCell)
GATED_MODULES = (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell)


def recurrence(model: nn.Module, m: ModelMap) -> str | None:
    """"vanilla", "gated" (LSTM/GRU, or hand-written cells with gates) or None (no recurrence).

    A hand-written cell shows as a layer (not a norm) called at least ``MIN_STEPS`` times
    in one forward on (batch, features) steps; it is gated when an activation marked as a gate
    runs more than once. A block shared along depth takes the whole sequence per call: HF ALBERT
    read as a vanilla recurrence, and its first-token pooling as a gradient exploding through time.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(3, 3), nn.Tanh())
        >>> recurrence(net, ModelMap(net, torch.randn(2, 3))) is None
        True
    """
    mods = list(model.modules())
    if any(isinstance(x, VANILLA_MODULES) for x in mods):
        return "vanilla"
    if any(isinstance(x, GATED_MODULES) for x in mods):
        return "gated"
    # a cell takes one step, (batch, features), per call; a block shared along depth (ALBERT, a looped
    # encoder layer) takes the whole sequence each call and is no recurrence through time
    if any(x.calls >= MIN_STEPS and x.kind != "norm" and len(x.input_shape or ()) == 2 for x in m.layers):
        return "gated" if any(s.gate and s.calls > 1 for s in m.activations) else "vanilla"
    return None


__all__ = ["GATED_MODULES", "VANILLA_MODULES", "recurrence"]
