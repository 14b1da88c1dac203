"""``forget-bias``: the keep gate of LSTM/GRU layers set open (bias +1), weights kept.

An LSTM carries its state (and the gradient through time) along ``c_t = f * c_(t-1) + ...``,
``f = sigmoid(W_f x + U_f h + b_f)``; a GRU along ``h' = (1 - z) * n + z * h``, its update gate
``z`` in the same role. A gate whose bias starts at -3 keeps 5% of the state per step: the
gradient through time dies within a few steps and the gate, whose own gradient is what would
open it, never learns to. Gers et al. (2000) and Jozefowicz, Zaremba & Sutskever (2015, sec. 3.1)
start the forget gate at a bias of +1 (73% kept per step); this remedy writes ``value`` (default
+1) into that gate's slice of ``bias_ih`` and 0 into ``bias_hh`` (torch's gate order: LSTM
i, f, g, o; GRU r, z, n: both at ``[H:2H]``), for every layer and direction. Nothing else moves,
so the remedy is warm-start safe. Layers without biases get advice.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.LSTM(3, 4)
    >>> with torch.no_grad():
    ...     _ = net.bias_ih_l0[4:8].fill_(-3.0)
    >>> new, change = forget_bias(net, None, RemedyContext("forget-bias"))
    >>> new.bias_ih_l0[4:8].tolist(), new.bias_hh_l0[4:8].tolist(), change.modules
    ([1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [''])
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register
from graddoctor.measure.monitor.gates import KEEP_GATE, mean_keep_bias, retain

#: module types whose keep gate sits at rows [H:2H] of their biases
GATED = tuple(KEEP_GATE)
DEFAULT_BIAS = 1.0


def gated_layers(model: nn.Module) -> list[str]:
    """Names of the LSTM/GRU (and cell) modules of ``model`` with a trainable parameter.

    Example:
        >>> gated_layers(nn.Sequential(nn.LSTM(2, 2), nn.Linear(2, 1)))
        ['0']
    """
    return [n for n, m in model.named_modules()
            if isinstance(m, GATED) and any(p.requires_grad for p in m.parameters())]


@register("forget-bias", family="init", keeps_map=True, options=("value",),
          summary="LSTM forget / GRU update gate bias set to +1: the gate starts open, weights kept")
def forget_bias(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Open the keep gate of the LSTM/GRU layers in ``layers`` (None: all of them).

    Args:
        model: the model (deep-copied unless ``ctx.inplace``).
        layers: module names (None: ``gated_layers(model)``); other modules are skipped.
        ctx: ``ctx.options["value"]``: the gate's bias (default +1), ``ctx.inplace``.

    Returns:
        ``(new_model, change)``: "applied" with the old mean bias per layer, or "advice" when no
        layer has a bias to set.

    Raises:
        Nothing.

    Example:
        >>> forget_bias(nn.Linear(2, 2), None, RemedyContext("forget-bias"))[1].kind
        'advice'
    """
    value = float(ctx.options.get("value", DEFAULT_BIAS))
    new = model if ctx.inplace else copy.deepcopy(model)
    mods = dict(new.named_modules())
    names = gated_layers(new) if layers is None else [n for n in layers if isinstance(mods.get(n), GATED)]
    before: dict[str, float] = {}
    with torch.no_grad():
        for n in names:
            m = mods[n]
            h = m.hidden_size
            pairs = [(p, getattr(m, name.replace("bias_ih", "bias_hh"), None))
                     for name, p in m.named_parameters(recurse=False) if name.startswith("bias_ih")]
            if not pairs:
                continue
            before[n] = round(mean_keep_bias(m) or 0.0, 4)
            for ih, hh in pairs:
                ih[h:2 * h].fill_(value)
                if hh is not None:
                    hh[h:2 * h].zero_()
    why = (f"the keep gate (LSTM forget, GRU update) starts at bias {value:+g}: it keeps "
           f"{retain(value):.0%} of the state per step, so the gradient "
           "flows back through time and the gate can learn (Gers et al. 2000; Jozefowicz et al. 2015)")
    if not before:
        return new, Change("forget-bias", [], "no LSTM/GRU layer with biases: " + why, "advice",
                           {"value": value})
    return new, Change("forget-bias", list(before), why, "applied", {"value": value, "bias_before": before})
