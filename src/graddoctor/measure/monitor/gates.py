"""The memory of gated recurrent layers: the mean bias of the gate that keeps the state.

Per step, an LSTM keeps ``f_t`` of its cell state and a GRU ``z_t`` of its hidden state
(PyTorch's equations: ``c_t = f_t * c_{t-1} + i_t * g_t``, gates in the order i, f, g, o;
``h_t = (1 - z_t) * n_t + z_t * h_{t-1}``, gates in the order r, z, n; torch's ``z`` is the
*keep* gate, as the LSTM's ``f``). Both are slice ``[H:2H]`` of ``bias_ih + bias_hh``. With
the gate at its mean bias ``b`` (inputs and state near 0) a fraction ``retain = sigmoid(b)``
of the state survives each step: the expected memory is ``1 / (1 - retain)`` steps (the
geometric series), and the gradient along the state path shrinks by ``retain`` per step.

``gate_memory(module, layer)`` is the meta record's entry at attach (with the sequence length
``seq_len`` the map saw: the time axis of the input, or the calls of a cell in one forward);
``gate_biases(layers)`` the biases read again at each flush (the step record's ``gate_bias``:
the gate learns, so its bias moves during training).

Example:
    >>> import torch
    >>> lstm = torch.nn.LSTM(1, 4)
    >>> with torch.no_grad():
    ...     _ = lstm.bias_ih_l0.zero_(), lstm.bias_hh_l0.zero_(); lstm.bias_ih_l0[4:8] = -3.0
    >>> mem = gate_memory(lstm)
    >>> mem["gate"], mem["bias"], mem["memory_steps"]
    ('forget', -3.0, 1.0498)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

#: module type -> name of the gate that keeps the state (slice [H:2H] of the gate biases)
KEEP_GATE = {nn.LSTM: "forget", nn.LSTMCell: "forget", nn.GRU: "update", nn.GRUCell: "update"}


def keep_gate(module: Any) -> str | None:
    """``"forget"`` (LSTM), ``"update"`` (GRU) or None (any other module).

    Example:
        >>> keep_gate(nn.GRU(2, 2)), keep_gate(nn.RNN(2, 2))
        ('update', None)
    """
    return next((g for t, g in KEEP_GATE.items() if isinstance(module, t)), None)


def mean_keep_bias(module: Any) -> float | None:
    """Mean of ``bias_ih + bias_hh`` over the keep gate's units, every layer and direction
    (0.0 for a module built with ``bias=False``); None for another module, or parameters that
    are not whole (an FSDP shard).

    Example:
        >>> gru = nn.GRU(2, 3, bias=False)
        >>> mean_keep_bias(gru), mean_keep_bias(nn.Linear(2, 2))
        (0.0, None)
    """
    if keep_gate(module) is None:
        return None
    h = module.hidden_size
    params = dict(module.named_parameters())
    pairs = [(p, params.get("bias_hh" + n[len("bias_ih"):])) for n, p in params.items() if n.startswith("bias_ih")]
    if not pairs:
        return 0.0 if not getattr(module, "bias", True) else None
    parts = []
    with torch.no_grad():
        for ih, hh in pairs:
            if hh is None or ih.dim() != 1 or ih.shape != hh.shape or ih.numel() < 2 * h:
                return None
            parts.append((ih[h:2 * h] + hh[h:2 * h]).float())
        return float(torch.cat(parts).mean())


def retain(bias: float) -> float:
    """The fraction of the state a keep gate at ``bias`` keeps per step: ``sigmoid(bias)``.

    Example:
        >>> retain(0.0), retain(-800.0)
        (0.5, 0.0)
    """
    return 1.0 / (1.0 + math.exp(-bias)) if bias > -700 else 0.0


def memory_steps(bias: float) -> float:
    """Expected memory ``1 / (1 - sigmoid(bias))`` in steps (inf for a gate fully open).

    Example:
        >>> memory_steps(0.0), round(memory_steps(1.0), 2)
        (2.0, 3.72)
    """
    keep = retain(bias)
    return 1.0 / (1.0 - keep) if keep < 1.0 else math.inf


def seq_len(module: Any, layer: Any) -> int | None:
    """Steps the module ran over in the traced forward: the time axis of its input (``batch_first``
    honoured), or the calls of a cell; None when the map has no shape (a packed sequence, no map).

    Example:
        >>> from types import SimpleNamespace
        >>> seq_len(nn.LSTM(1, 2, batch_first=True), SimpleNamespace(input_shape=(8, 150, 1), calls=1))
        150
    """
    if layer is None:
        return None
    if isinstance(module, nn.RNNCellBase):
        return int(layer.calls) or None
    shape = tuple(layer.input_shape or ())
    if len(shape) == 3:
        return int(shape[1] if module.batch_first else shape[0])
    return int(shape[0]) if len(shape) == 2 else None


def gate_memory(module: Any, layer: Any = None) -> dict | None:
    """The meta entry of a gated recurrent layer: ``{"gate", "bias", "retain", "memory_steps",
    "seq_len"}`` (rounded to 4 decimals); None for another module or an unreadable bias.

    Args:
        module: the layer's module.
        layer: its ``ModelMap`` layer record (gives ``seq_len``), or None.
    """
    bias = mean_keep_bias(module)
    if bias is None or not math.isfinite(bias):
        return None
    return {"gate": keep_gate(module), "bias": round(bias, 4), "retain": round(retain(bias), 4),
            "memory_steps": round(memory_steps(bias), 4), "seq_len": seq_len(module, layer)}


def gate_biases(names: list[str], modules: list[Any]) -> dict[str, float]:
    """``{layer name: mean keep-gate bias}`` of the gated recurrent layers, now.

    Example:
        >>> gate_biases(["a", "b"], [nn.Linear(2, 2), nn.GRU(2, 2, bias=False)])
        {'b': 0.0}
    """
    out = {}
    for name, m in zip(names, modules):
        b = mean_keep_bias(m) if m is not None else None
        if b is not None and math.isfinite(b):
            out[name] = round(b, 4)
    return out


__all__ = ["KEEP_GATE", "gate_biases", "gate_memory", "keep_gate", "mean_keep_bias", "memory_steps", "retain",
           "seq_len"]
