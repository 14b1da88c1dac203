"""Vanishing through time, from the gate: an LSTM/GRU whose keep gate is closed.

An LSTM carries the gradient through time along its cell state, multiplied at each step by
the forget gate ``f = sigmoid(b_f + ...)`` (a GRU along its hidden state, by its update gate
``z``: torch's ``h' = (1 - z) * n + z * h``). The per-layer gradient norms of watch cannot
resolve time steps, but watch records that gate's mean bias at attach (meta ``gate_memory``:
``bias``, ``memory_steps = 1 / (1 - sigmoid(bias))``, the ``seq_len`` the map saw) and at each
flush (step ``gate_bias``). A gate closed at attach (``sites.closed_gates``: bias <=
``CLOSED_BIAS`` = -2, the state path losing >= 3 orders over the sequence) with a loss that
sat flat near its start (loss-plateau's ``mid`` windows: 8 flat 20-step windows) or has not
moved (``progress``), or has not improved over its last ``FLAT_SPAN`` steps at a level above
``CONVERGED_FRAC`` of its start (a regression run sitting at its constant-prediction loss), is the
missing long-range gradient: a ``vanishing-gradient`` warning
(an error under the severity policy when the run learnt nothing). A default-init gate (bias
near 0) never fires, however long the sequence: it opens as training needs it.

A gate that opened since attach (its last recorded ``gate_bias`` above ``CLOSED_BIAS``: learnt,
or repaired) is no longer a cause. The fix is a gate that starts open: ``forget-bias`` (+1,
Jozefowicz et al. 2015; the weights kept), or chrono init for long sequences (Tallec & Ollivier
2018: ``b_f ~ log U(1, T - 1)``); ``orthogonal-init`` re-draws the recurrent layer with zero
biases (the gate at 0.5), the second choice.

Example:
    >>> gm = {"gate": "forget", "bias": -3.0, "retain": 0.0474, "memory_steps": 1.0498, "seq_len": 150}
    >>> meta = {"layers": [{"name": "lstm", "kind": "rnn", "type": "LSTM", "gate_memory": gm}]}
    >>> steps = [{"step": t, "loss": 0.69} for t in range(1, 61)]
    >>> [(f.code, f.layers, f.evidence["seq_len"]) for f in closed_forget_gate(meta, steps)]
    [('vanishing-gradient', ['lstm'], 150)]
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.training.gradients import vanishing_gradient
from graddoctor.diagnose.training.loss import EARLY_STEPS, MID_PERSIST, MID_WINDOW, plateau_flags
from graddoctor.diagnose.training.progress import loss_progress
from graddoctor.diagnose.training.series import as_float, first_persistent, used_steps
from graddoctor.diagnose.training.sites import CLOSED_BIAS, closed_gates, state_path_orders
from graddoctor.report import Finding

REF = ("Gers, Schmidhuber & Cummins 2000 (Neural Computation 12(10): learning to forget); "
       "Jozefowicz, Zaremba & Sutskever 2015 (ICML, sec. 3.1: forget-gate bias 1); "
       "Tallec & Ollivier 2018 (ICLR: chrono initialization)")
#: steps without improvement (after ``EARLY_STEPS``) that count as stuck at any level
FLAT_SPAN = 200
#: losses in each of the two levels compared, and the drop between them that counts as progress
FLAT_LEVEL, FLAT_DROP = 50, 0.1
#: ... unless the loss is below this fraction of its start (a run that converged)
CONVERGED_FRAC = 0.05
#: remedies that help, best first
REMEDIES = ["forget-bias", "orthogonal-init"]


def _stuck(steps: list[dict]) -> tuple[int, str] | None:
    """(step, how) at which the loss is known to be stuck: flat near its start over the
    plateau rule's ``mid`` windows, or not moved over the early steps (``loss_progress``)."""
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))
          and int(s.get("step", 0)) <= EARLY_STEPS]
    if len(st) >= MID_WINDOW:
        loss = np.array([as_float(s["loss"]) for s in st])
        lr = np.array([as_float(s.get("lr")) for s in st])
        i = first_persistent(plateau_flags(loss, lr, MID_WINDOW)[0], MID_PERSIST)
        if i is not None:
            return int(st[i + MID_PERSIST - 1].get("step", 0)), "flat"
    if st and loss_progress(steps)["stuck"]:
        return int(st[-1].get("step", 0)), "not moved"
    return _flat_since(steps)


def _flat_since(steps: list[dict]) -> tuple[int, str] | None:
    """(step, "flat since") when the loss has not improved over its last ``FLAT_SPAN`` steps (the
    median of the last ``FLAT_LEVEL`` losses at least ``1 - FLAT_DROP`` of the median ``FLAT_SPAN``
    steps before: 20-loss medians of a flat MSE differ by 6%) at a level above ``CONVERGED_FRAC``
    of its start: a regression run that fell at once to its constant-prediction loss and sat
    there (trial D: the adding problem, T=60, forget bias -4: MSE 1.17 -> 0.167 in 50 steps, flat
    for 1,150; chrono init reached 0.008)."""
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    if len(st) < FLAT_SPAN + EARLY_STEPS:
        return None
    loss = np.array([as_float(s["loss"]) for s in st])
    start = float(np.median(loss[:MID_WINDOW]))
    before, now = (float(np.median(w)) for w in (loss[-FLAT_SPAN - FLAT_LEVEL:-FLAT_SPAN], loss[-FLAT_LEVEL:]))
    if now >= (1.0 - FLAT_DROP) * before and now >= CONVERGED_FRAC * start > 0:
        return int(st[-FLAT_SPAN].get("step", 0)), "flat since"
    return None


def _end_bias(steps: list[dict], name: str) -> float | None:
    """The layer's gate bias at the last flush that recorded it (step ``gate_bias``), or None."""
    for s in reversed(steps):
        b = (s.get("gate_bias") or {}).get(name)
        if isinstance(b, (int, float)) and math.isfinite(b):
            return float(b)
    return None


def closed_forget_gate(meta: dict, steps: list[dict]) -> list[Finding]:
    """A ``vanishing-gradient`` warning on the LSTM/GRU layers whose keep gate is closed while
    the loss is stuck (see the module docstring).

    Example:
        >>> closed_forget_gate({"layers": []}, [])
        []
    """
    gates = [(n, g) for n, g in closed_gates(meta)
             if (end := _end_bias(steps, n)) is None or end <= CLOSED_BIAS]  # not opened since
    if not gates:
        return []
    stuck = _stuck(steps)
    if stuck is None:
        return []
    step, how = stuck
    name, gm = min(gates, key=lambda g: g[1]["bias"])  # the most closed one speaks for all
    t = gm.get("seq_len")
    end = _end_bias(steps, name)
    ev = {"gate": gm.get("gate"), "gate_bias": gm["bias"], "retain_per_step": gm.get("retain"),
          "memory_steps": gm.get("memory_steps"), "seq_len": t,
          "state_path_orders": round(state_path_orders(gm["bias"], t), 1) if t else None,
          "gate_bias_end": end, "closed_bias_threshold": CLOSED_BIAS, "loss_evidence": how,
          "gated_layers": {n: g["bias"] for n, g in gates}}
    gate = "forget" if gm.get("gate") == "forget" else "update (z)"
    length = (f"the sequences are {t} steps long" if t else
              "the sequence length was not recorded (pass example_inputs to gd.watch)")
    moved = "" if end is None else f", {end:+.2f} at the last record"
    msg = (f"likely vanishing through time: the {gate} gate of {name or 'the model'} is closed (mean "
           f"bias {gm['bias']:+.2f} at attach{moved}: it keeps {gm.get('retain', 0):.0%} of the state "
           f"per step, a memory of {gm.get('memory_steps', 0):.2f} steps) and {length}; the loss "
           + {"flat": f"sat flat near its start (step {step})", "not moved": f"has not moved (step {step})",
              "flat since": f"has not improved since step {step}"}[how] + ". Start the "
           "gate open: a bias of +1 or more (Jozefowicz et al. 2015), or chrono init for long "
           "sequences (b = log U(1, T-1), Tallec & Ollivier 2018)")
    return [Finding("vanishing-gradient", "warning", msg, [n for n, _ in gates], ev,
                    list(REMEDIES) if any(meta_type(meta, n) in ("LSTM", "GRU") for n, _ in gates) else [],
                    step, REF)]


def meta_type(meta: dict, name: str) -> str | None:
    """The recorded module type of layer ``name``."""
    return next((ly.get("type") for ly in meta.get("layers", []) if ly.get("name") == name), None)


def vanishing_gradient_through_gates(meta: dict, steps: list[dict]) -> list[Finding]:
    """The registered ``vanishing-gradient`` rule: ``gradients.vanishing_gradient`` (across
    layers, or a vanilla RNN through time) and ``closed_forget_gate`` (through time, from the gate).

    Example:
        >>> vanishing_gradient_through_gates({"layers": []}, [])
        []
    """
    return vanishing_gradient(meta, steps) + closed_forget_gate(meta, steps)


__all__ = ["REMEDIES", "closed_forget_gate", "vanishing_gradient_through_gates"]
