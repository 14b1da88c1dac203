"""loss-plateau: the fast, mid and loss-only paths.

Synthetic records: the same flat loss is called after 17 steps when the input-side
gradients vanish or every step is tiny, after 27 with weak signs (saturated hidden
layers, a vanilla RNN), and only after 49 when nothing explains it; a healthy slow
start (flat for 30 steps, then learning) is never called; every reported step is
the one a live monitor reaches (records up to that step only).
"""

from __future__ import annotations

import math

import pytest

from graddoctor.diagnose.training import diagnose
from graddoctor.diagnose.training.loss import (
    FAST_PERSIST,
    FAST_WINDOW,
    MID_PERSIST,
    MID_WINDOW,
    PERSIST,
    WINDOW,
    cannot_learn,
    loss_plateau,
)

N = 8  # weight layers


def _meta(acts: list[dict] | None = None) -> dict:
    return {"layers": [{"name": f"l{i}", "type": "Linear", "kind": "linear", "trainable": True}
                       for i in range(N)], "activations": acts or [], "config": {}}


def _rnn_meta(cell: str) -> dict:
    return {"layers": [{"name": "rnn", "type": cell, "kind": "rnn", "trainable": True},
                       {"name": "head", "type": "Linear", "kind": "linear", "is_output": True}],
            "activations": [], "config": {}}


def _steps(loss, orders: float = 0.0, update: float | None = 1e-3, n: int = 100) -> list[dict]:
    """Relative gradients 10^(-orders) on the input-side layers (1 on the rest); update ratios
    ``update`` on every layer at steps 1 and 51 (watch's sampling)."""
    out = []
    for t in range(1, n + 1):
        g = {f"l{i}": 10.0 ** (-orders if i < N // 2 else 0.0) * 0.1 for i in range(N)}
        s = {"step": t, "loss": loss(t), "skipped": False, "lr": 0.1, "grad_norm": g,
             "weight_norm": {f"l{i}": 0.1 for i in range(N)}}
        if update is not None and t % 50 == 1:
            s["update_ratio"] = {f"l{i}": update for i in range(N)}
        out.append(s)
    return out


def _noise(t: int) -> float:
    return 0.02 * math.sin(1.7 * t) + 0.01 * math.cos(5.3 * t)


def flat(t: int) -> float:
    return 2.3 + _noise(t)


def slow_start(t: int) -> float:  # an LSTM: flat at log(10) for 30 steps, then learning
    return 2.3 + _noise(t) if t <= 30 else 2.3 * 0.97 ** (t - 30) + _noise(t)


def test_flat_loss_with_vanishing_input_side_is_called_fast():
    steps = _steps(flat, orders=4.0)
    f = loss_plateau(_meta(), steps)
    assert f and f[0].evidence["gradient_evidence"] == "vanishing"
    assert f[0].step == FAST_WINDOW + FAST_PERSIST - 1 and f[0].evidence["window"] == FAST_WINDOW


def test_tiny_steps_on_every_layer_are_evidence():
    f = loss_plateau(_meta(), _steps(flat, update=1e-6))
    assert f and f[0].evidence["gradient_evidence"] == "tiny-steps" and f[0].step <= 20
    assert f[0].remedies == ["lr-find"] and "1e-4" in f[0].message


def test_stalled_input_side_updates_are_evidence():
    steps = _steps(flat)
    for s in steps:
        if "update_ratio" in s:
            s["update_ratio"] = {f"l{i}": 1e-7 if i < N // 2 else 1e-2 for i in range(N)}
    f = loss_plateau(_meta(), steps)
    assert f and f[0].evidence["gradient_evidence"] == "stalled" and f[0].step <= 20


def test_flat_loss_with_healthy_gradients_waits_for_the_long_window():
    f = loss_plateau(_meta(), _steps(flat, orders=0.5))  # half an order: not evidence
    assert f and f[0].evidence["path"] == "loss only"
    assert f[0].step == WINDOW + PERSIST - 1


@pytest.mark.parametrize("orders", [0.0, 4.0])
def test_learning_is_never_a_plateau(orders):
    # even with vanishing evidence, a loss that falls is learning (the head alone can learn)
    assert loss_plateau(_meta(), _steps(lambda t: 2.3 * 0.98 ** t + _noise(t), orders)) == []


def test_healthy_slow_start_is_not_called():
    assert loss_plateau(_meta(), _steps(slow_start)) == []
    # warm-up: a flat loss while the learning rate ramps is the schedule, even with evidence
    steps = _steps(flat, orders=4.0)
    for s in steps:
        s["lr"] = 1e-3 * s["step"]
    assert loss_plateau(_meta(), steps) == []


def test_a_plateau_the_run_has_left_is_not_reported():
    # flat at log 2 with vanishing evidence for 30 steps, then learning: a live monitor calls it
    # at step 17, but once the loss is well below its start the run is not stuck
    def escape(t: int) -> float:
        return 0.69 + _noise(t) / 3 if t <= 30 else 0.69 * 0.93 ** (t - 30) + _noise(t) / 3

    steps = _steps(escape, orders=4.0)
    assert loss_plateau(_meta(), steps[:30])  # still on the plateau at step 30
    assert loss_plateau(_meta(), steps) == []  # left it: 0.69 -> ~0.01 by step 100


def test_evidence_is_causal_and_needs_persistence():
    steps = _steps(flat, orders=4.0, update=None)
    why = cannot_learn(_meta(), steps)
    assert why[:2] == [None, None] and set(why[2:]) == {"vanishing"}
    # evidence that appears only late cannot date the plateau earlier than it appears
    steps = _steps(flat, update=None)
    for s in steps[46:]:
        s["grad_norm"] = {f"l{i}": 1e-6 if i < N // 2 else 0.1 for i in range(N)}
    f = loss_plateau(_meta(), steps)
    assert f and f[0].step == WINDOW + PERSIST - 1  # the loss-only path (step 49) came first
    steps = _steps(flat, update=None)
    for s in steps[20:]:
        s["grad_norm"] = {f"l{i}": 1e-6 if i < N // 2 else 0.1 for i in range(N)}
    f = loss_plateau(_meta(), steps)
    assert f and f[0].evidence["gradient_evidence"] == "vanishing"
    assert f[0].step == 21 + EVIDENCE_LAG + FAST_PERSIST - 1


EVIDENCE_LAG = 2  # evidence holds from its 3rd step in a row (EVIDENCE_PERSIST = 3)


def _tanh_sites(sat: float) -> tuple[list[dict], dict]:
    acts = [{"name": f"a{i}", "kind": "Tanh", "family": "saturating", "owner": f"a{i}",
             "functional": False, "is_output": False} for i in range(N - 1)]
    return acts, {a["name"]: {"sat_frac": sat, "dead_frac": 0.0} for a in acts}


def test_saturated_hidden_layers_take_the_mid_path():
    acts, sample = _tanh_sites(0.6)
    steps = _steps(flat)
    for s in steps:
        if s["step"] % 50 == 1:
            s["act"] = sample
    f = loss_plateau(_meta(acts), steps)
    assert f and f[0].evidence["path"] == "mid" and f[0].evidence["gradient_evidence"] == "saturated"
    assert f[0].step == MID_WINDOW + MID_PERSIST - 1
    acts, sample = _tanh_sites(0.1)  # a healthy tanh net: few units at the bounds
    for s in steps:
        if "act" in s:
            s["act"] = sample
    assert loss_plateau(_meta(acts), steps)[0].evidence["path"] == "loss only"


def test_vanilla_rnn_takes_the_mid_path_lstm_does_not():
    steps = [{"step": t, "loss": flat(t), "lr": 1e-3} for t in range(1, 101)]
    f = loss_plateau(_rnn_meta("RNN"), steps)
    assert f and f[0].evidence["gradient_evidence"] == "vanilla-rnn"
    assert f[0].remedies[0] == "lstm"
    assert f[0].step == MID_WINDOW + MID_PERSIST - 1
    f = loss_plateau(_rnn_meta("LSTM"), steps)
    assert f and f[0].evidence["path"] == "loss only" and f[0].step == WINDOW + PERSIST - 1
    # an LSTM's slow start (flat at log(10) for 30 steps) is not a plateau
    slow = [{"step": t, "loss": slow_start(t), "lr": 1e-3} for t in range(1, 101)]
    assert loss_plateau(_rnn_meta("LSTM"), slow) == []


@pytest.mark.parametrize("orders, update", [(4.0, 1e-3), (0.0, 1e-6), (-4.0, 1e-3),
                                           (0.0, 1e-3)])
def test_reported_step_is_the_online_step(orders, update):
    """The step reported equals the shortest prefix of the run on which the rule fires."""
    meta, steps = _meta(), _steps(flat, orders, update, n=60)
    f = loss_plateau(meta, steps)
    assert f
    online = next(k for k in range(1, len(steps) + 1)
                  if any(x.code == "loss-plateau" for x in diagnose(meta, steps[:k],
                                                                      rules=["loss-plateau"])))
    assert f[0].step == online
