"""Which layers and activation sites of a run's ``meta`` a training-time rule reads.

``meta["activations"]`` lists the activation sites (``kind``, ``family``, ``owner``,
``is_output``, ``gate``) and ``meta["layers"]`` the layers (``kind``, ``type``,
``trainable``; an LSTM/GRU its ``gate_memory``), as the run-log format records them.
Activation facts come from ``graddoctor.kinds``.

Example:
    >>> meta = {"activations": [
    ...     {"name": "1", "kind": "tanh", "family": "saturating", "is_output": False},
    ...     {"name": "lstm.sig", "kind": "sigmoid", "family": "saturating", "owner": "lstm"},
    ...     {"name": "3", "kind": "relu", "family": "relu", "is_output": False}]}
    >>> [s["name"] for s in saturating_hidden_sites(meta)], [s["name"] for s in dying_sites(meta)]
    (['1'], ['3'])
"""

from __future__ import annotations

import math

from graddoctor import kinds
from graddoctor.diagnose.thresholds import VANILLA_RNN_TYPES

#: owner-name fragments of gates (LSTM/GRU cells, hand-written cells, GLU, squeeze-excitation):
#: their outputs are meant to sit near 0/1, so saturation there is no fault
GATE_HINTS = ("lstm", "gru", "gate", "cell")


def is_gate(site: dict) -> bool:
    """True for a gate: marked ``gate`` by the model map, or owned by a module named like one.

    Example:
        >>> is_gate({"owner": "encoder.GRUCell"}), is_gate({"owner": "mlp.2"})
        (True, False)
    """
    owner = (site.get("owner") or "").lower()
    return bool(site.get("gate")) or any(h in owner for h in GATE_HINTS)


def saturating_hidden_sites(meta: dict) -> list[dict]:
    """Sigmoid/tanh-family sites that are hidden activations (output sites and gates left out)."""
    return [a for a in meta.get("activations", [])
            if a.get("family") == "saturating" and not a.get("is_output") and not is_gate(a)]


def dying_sites(meta: dict) -> list[dict]:
    """Sites of a kind whose units can die (``kinds.DYING``: relu, relu6), output sites left out."""
    return [a for a in meta.get("activations", [])
            if a.get("kind") in kinds.DYING and not a.get("is_output")]


def vanilla_rnns(meta: dict) -> list[str]:
    """Names of the trainable vanilla recurrent layers (``VANILLA_RNN_TYPES``: no gates).

    Example:
        >>> vanilla_rnns({"layers": [{"name": "rnn", "kind": "rnn", "type": "RNN"},
        ...                          {"name": "lstm", "kind": "rnn", "type": "LSTM"}]})
        ['rnn']
    """
    return [ly["name"] for ly in meta.get("layers", [])
            if ly.get("kind") == "rnn" and ly.get("type") in VANILLA_RNN_TYPES
            and ly.get("trainable", True)]


#: a keep gate (LSTM forget, GRU update) whose mean bias is at or below this is closed: it keeps
#: sigmoid(-2) = 12% of the state per step (memory 1.1 steps). A default-init gate (b_ih and b_hh
#: each ~U(-1/sqrt(H), 1/sqrt(H)): a mean near 0, memory ~2 steps *nominally*) trains
#: fine: the gate is input-driven and sits where its slope is largest (sigmoid' = 0.25 at 0), so
#: it opens as soon as remembering pays. A closed gate has a slope of 0.10 at -2, 0.045 at -3,
#: 5e-5 at -10, and the signal that would open it is the gradient through the state it drops:
#: it stays shut (Gers, Schmidhuber & Cummins 2000, sec. 4: gates near 0 cut the error flow;
#: Jozefowicz et al. 2015 set +1 so that it starts open).
CLOSED_BIAS = -2.0
#: ...and the sequence must be long next to that memory: the state path keeps sigmoid(b)^T of
#: the gradient, at least this many orders lost over the recorded length T (the rule of thumb of
#: vanishing; b = -2 needs T >= 4, b = -3 T >= 3)
CLOSED_ORDERS = 3.0


def closed_gates(meta: dict) -> list[tuple[str, dict]]:
    """``(name, gate_memory)`` of the LSTM/GRU layers whose keep gate was closed at attach
    (mean bias <= ``CLOSED_BIAS``) over a sequence long next to its memory (the state path loses
    >= ``CLOSED_ORDERS`` orders over ``seq_len``; an unknown length counts).

    Example:
        >>> gm = {"gate": "forget", "bias": -3.0, "retain": 0.0474, "memory_steps": 1.05, "seq_len": 150}
        >>> closed_gates({"layers": [{"name": "lstm", "gate_memory": gm},
        ...                          {"name": "gru", "gate_memory": {**gm, "bias": 0.1}}]})[0][0]
        'lstm'
    """
    out = []
    for ly in meta.get("layers", []):
        gm = ly.get("gate_memory")
        if not isinstance(gm, dict) or not isinstance(gm.get("bias"), (int, float)) or gm["bias"] > CLOSED_BIAS:
            continue
        t = gm.get("seq_len")
        if isinstance(t, (int, float)) and t > 0 and state_path_orders(gm["bias"], t) < CLOSED_ORDERS:
            continue
        out.append((ly["name"], gm))
    return out


#: a keep gate whose memory at attach is under this fraction of the sequence length is short
SHORT_MEMORY_FRAC = 0.1


def short_memory(meta: dict) -> dict:
    """``{"short_memory_layers", "memory_steps", "seq_len"}`` for the LSTM/GRU layers whose keep
    gate remembered under ``SHORT_MEMORY_FRAC`` of the sequence at attach (PyTorch's default
    LSTM: ~2 steps), else ``{}``. A plateau with no other cause may be that memory: an LSTM stuck
    at chance recalling the first of 50 tokens for 500 steps learnt it with its forget bias at +1.

    Example:
        >>> gm = {"gate": "forget", "bias": 0.0, "memory_steps": 2.0, "seq_len": 50}
        >>> short_memory({"layers": [{"name": "rnn", "gate_memory": gm}]})
        {'short_memory_layers': ['rnn'], 'memory_steps': 2.0, 'seq_len': 50}
        >>> short_memory({"layers": [{"name": "rnn", "gate_memory": {**gm, "seq_len": 12}}]})
        {}
    """
    short = [(ly["name"], ly["gate_memory"]) for ly in meta.get("layers", []) if isinstance(ly.get("gate_memory"), dict)
             and isinstance(m := ly["gate_memory"].get("memory_steps"), (int, float))
             and isinstance(t := ly["gate_memory"].get("seq_len"), (int, float)) and m < SHORT_MEMORY_FRAC * t]
    if not short:
        return {}
    return {"short_memory_layers": [n for n, _ in short], "memory_steps": min(g["memory_steps"] for _, g in short),
            "seq_len": max(g["seq_len"] for _, g in short)}


def state_path_orders(bias: float, steps: float) -> float:
    """Orders of magnitude the gradient loses along the state path over ``steps`` steps of a keep
    gate at ``bias``: ``-steps * log10(sigmoid(bias))``.

    Example:
        >>> round(state_path_orders(-3.0, 150), 1)
        198.6
    """
    return steps * (math.log10(1.0 + math.exp(-bias)) if bias > -700 else -bias / math.log(10))


def site_layer(site: dict) -> str:
    """Module name for a site: the activation module, or the owner of a functional call.

    Example:
        >>> site_layer({"name": "f.sigmoid", "owner": "f", "functional": True})
        'f'
    """
    return site.get("owner", site["name"]) if site.get("functional") else site["name"]


__all__ = ["CLOSED_BIAS", "CLOSED_ORDERS", "GATE_HINTS", "SHORT_MEMORY_FRAC", "closed_gates", "dying_sites", "is_gate",
           "saturating_hidden_sites", "short_memory", "site_layer", "state_path_orders", "vanilla_rnns"]
