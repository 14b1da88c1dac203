"""Exploding signals that a balanced weight-gradient profile hides: two more paths of
``exploding-gradient``.

- ``signal_growth``: on the sampled forwards, the activation scale (``act[site]["std"]``) of
  the hidden sites, in execution order, grows by >= ``SIGNAL_ORDERS`` orders of magnitude
  from the input side to the output side (medians of the first and last thirds, as the
  gradient profiles), on ``PERSIST`` samples in a row. In a chain whose layers multiply the
  signal by a gain g, the forward signal and the gradient backpropagated toward the input
  both grow as g^depth, while each weight gradient ``dL/dW_l = delta_l h_(l-1)^T`` multiplies
  one growing and one shrinking factor and stays balanced (He et al. 2015, sec. 2.2: the
  forward and backward conditions differ by a factor only; Poole et al. 2016, the chaotic
  regime). Healthy He-initialised, normalised or residual nets stay within one order.
- ``loss_spikes``: the loss jumps to >= ``SPIKE_RATIO`` x the median of the ``SPIKE_WINDOW``
  losses before it, back up to >= ``SPIKE_FLOOR`` x the starting loss, on >= ``MIN_SPIKES``
  steps: a learning rate past the stability limit that overshoots again and again without a
  NaN (Cohen et al. 2021, edge of stability; Pascanu et al. 2013, sec. 2.1). Mini-batch noise
  near convergence doubles a small loss but does not throw it back toward its start.

Example:
    >>> meta = {"activations": [{"name": str(i), "kind": "relu", "family": "relu"} for i in range(6)]}
    >>> steps = [{"step": t, "act": {str(i): {"std": 4.0 ** i} for i in range(6)}} for t in (10, 20)]
    >>> signal_growth(meta, steps).evidence["signal_growth_orders"]
    2.41
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.thresholds import MIN_LAYERS
from graddoctor.diagnose.training.series import (
    as_float,
    first_persistent,
    sampled,
    side_drop,
    used_steps,
)
from graddoctor.diagnose.training.sites import is_gate
from graddoctor.report import Finding

SIGNAL_ORDERS = 2.0
PERSIST = 2
SPIKE_RATIO = 2.0
SPIKE_WINDOW = 10
SPIKE_FLOOR = 1.0
MIN_SPIKES = 8
START_LOSSES = 5

REF_SIGNAL = ("He, Zhang, Ren & Sun 2015 (ICCV, sec. 2.2); Poole et al. 2016 (NeurIPS, sec. 3: "
              "the chaotic regime)")
REF_SPIKES = ("Pascanu, Mikolov & Bengio 2013 (ICML, sec. 2.1); Cohen et al. 2021 (ICLR, "
              "gradient descent at the edge of stability)")


def _hidden_sites(meta: dict) -> list[dict]:
    return [a for a in meta.get("activations", []) if not a.get("is_output") and not is_gate(a)]


def signal_growth(meta: dict, steps: list[dict]) -> Finding | None:
    """The hidden activation scale growing >= ``SIGNAL_ORDERS`` orders with depth, or None."""
    sites = [a["name"] for a in _hidden_sites(meta)]
    st = sampled(used_steps(steps), "act")
    if len(sites) < MIN_LAYERS or not st:
        return None
    rows = []
    for s in st:
        acts = s.get("act") or {}
        v = np.array([as_float((acts.get(n) or {}).get("std")) for n in sites])
        with np.errstate(divide="ignore", invalid="ignore"):
            rows.append(np.where(np.isfinite(v) & (v > 0), np.log10(np.where(v > 0, v, 1.0)), np.nan))
    drops = [side_drop(r) for r in rows]
    flags = [n >= MIN_LAYERS and d >= SIGNAL_ORDERS for d, _, n in drops]
    i = first_persistent(flags, PERSIST)
    if i is None:
        return None
    d, rate, n = drops[i]
    ev = {"signal_growth_orders": round(d, 2), "orders_per_site": round(rate, 3), "sites": n,
          "threshold_orders": SIGNAL_ORDERS,
          "first_sites_std_log10": round(float(np.nanmedian(rows[i][: max(1, n // 3)])), 2),
          "last_sites_std_log10": round(float(np.nanmedian(rows[i][-max(1, n // 3):])), 2)}
    msg = (f"the activation scale grows {d:.1f} orders of magnitude from the input side to the "
           f"output side over {n} hidden sites ({rate:.2f} per site): the gradient backpropagated "
           "toward the input grows as much, although the weight-gradient profile looks balanced")
    return Finding("exploding-gradient", "error", msg, sites[: max(1, n // 3)], ev,
                   ["he-init", "batchnorm", "lower-lr"], int(st[i].get("step", 0)), REF_SIGNAL)


def loss_spikes(meta: dict, steps: list[dict]) -> Finding | None:
    """>= ``MIN_SPIKES`` steps whose loss jumps >= ``SPIKE_RATIO`` x back toward its start, or None."""
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    loss = np.array([as_float(s["loss"]) for s in st])
    if len(loss) < SPIKE_WINDOW + START_LOSSES:
        return None
    start = float(np.median(loss[:START_LOSSES]))
    spikes = [t for t in range(SPIKE_WINDOW, len(loss))
              if loss[t] >= SPIKE_RATIO * float(np.median(loss[t - SPIKE_WINDOW:t]))
              and loss[t] >= SPIKE_FLOOR * start]
    if len(spikes) < MIN_SPIKES:
        return None
    t = spikes[MIN_SPIKES - 1]
    ev = {"loss_spikes": len(spikes), "spike_frac": round(len(spikes) / len(loss), 3),
          "spike_ratio": SPIKE_RATIO, "min_spikes": MIN_SPIKES, "loss_start": round(start, 4),
          "first_spike_step": int(st[spikes[0]].get("step", 0))}
    msg = (f"the loss jumped to >= {SPIKE_RATIO:g}x its recent level, back toward its start, on "
           f"{len(spikes)} of {len(loss)} steps without a NaN: the steps overshoot (learning rate "
           "past the stability limit)")
    return Finding("exploding-gradient", "error", msg, [], ev, ["lower-lr", "clip-norm", "warmup"],
                   int(st[t].get("step", 0)), REF_SPIKES)


__all__ = ["SIGNAL_ORDERS", "loss_spikes", "signal_growth"]
