"""Which layers and activation sites of a run's ``meta`` a training-time rule reads.

``meta["activations"]`` lists the activation sites (``kind``, ``family``, ``owner``,
``is_output``, ``gate``) and ``meta["layers"]`` the layers (``kind``, ``type``,
``trainable``), as the run-log format records them. Activation facts come from
``graddoctor.kinds``.

Example:
    >>> meta = {"activations": [
    ...     {"name": "1", "kind": "tanh", "family": "saturating", "is_output": False},
    ...     {"name": "lstm.sig", "kind": "sigmoid", "family": "saturating", "owner": "lstm"},
    ...     {"name": "3", "kind": "relu", "family": "relu", "is_output": False}]}
    >>> [s["name"] for s in saturating_hidden_sites(meta)], [s["name"] for s in dying_sites(meta)]
    (['1'], ['3'])
"""

from __future__ import annotations

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


def site_layer(site: dict) -> str:
    """Module name for a site: the activation module, or the owner of a functional call.

    Example:
        >>> site_layer({"name": "f.sigmoid", "owner": "f", "functional": True})
        'f'
    """
    return site.get("owner", site["name"]) if site.get("functional") else site["name"]


__all__ = ["GATE_HINTS", "dying_sites", "is_gate", "saturating_hidden_sites", "site_layer", "vanilla_rnns"]
