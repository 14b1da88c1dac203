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
  steps, while the steps are large (the largest sampled median update ratio >=
  ``SPIKE_MIN_UPDATE``): a learning rate past the stability limit that overshoots again and
  again without a NaN (Cohen et al. 2021, edge of stability; Pascanu et al. 2013, sec. 2.1).
  Mini-batch noise near convergence doubles a small loss but does not throw it back toward
  its start; a run that starts converged (a fine-tune) has heavy-tailed tiny losses whose
  spikes reach its "start", but its steps are ~1e-3 of the weights: no overshoot.
- ``diverged``: the loss level (median of ``DIVERGE_WINDOW`` losses) at >= ``DIVERGE_RATIO`` x its
  start up to the last record, while the steps are large (as ``loss_spikes``): a rate so far past
  stability that the loss jumps up and stays there, finite, with no spike left to count.
- ``oversized_updates``: the median over the weight layers of ``||w_t - w_(t-1)|| / ||w||``
  (watch's sampled ``update_ratio``) >= ``UPDATE_TOO_BIG`` on ``UPDATE_PERSIST`` samples in a
  row from step ``UPDATE_FROM_STEP`` (Adam's first steps move every weight by ~lr whatever its
  gradient, so they say nothing about stability): every step moves the weights by several
  percent, a learning rate far past the usual
  ~1e-3 of the weights per step (Karpathy, CS231n notes, "ratio of weights:updates"; You et
  al. 2017, LARS, sec. 3). It catches a learning rate 5-10x too high that does not diverge:
  in a BatchNorm net the scale-invariant weights grow instead (Hoffer et al. 2018, sec. 2),
  the loss still falls but stays above its twin's. Measured on the realistic suite's
  calibration half (``benchmarks/realistic``), from step 4: healthy runs peak at 0.021 (an
  LSTM, Adam 3e-3), the harmful runs with a learning rate 5-10x too high reach 0.043 and 0.102
  (5x) and 0.12-0.19 (10x) on two samples in a row. The threshold was 0.04 until the autofix
  benchmark's b-cnn1d-lr10x seed 0 (SGD at 10x, harmful) read 0.044 then 0.037 and was missed:
  0.035 keeps a 1.4x margin over the healthy SGD runs of both suites (5 seeds: peak 0.025; 0
  autofix actions on the 110 healthy SGD runs at 0.035). Only for optimizers that step along the
  gradient (SGD and the like): an adaptive optimizer (``ADAPTIVE_OPTIMIZERS``, the
  ``optimizer`` of the meta's config) moves every weight by ~lr whatever its gradient, so its
  update ratio is lr / weight scale, not a sign of instability: healthy Adam LSTM/GRU runs at
  lr 1e-2 reach 0.04-0.06 (the scenario suite), and the three Adam runs with a learning rate
  10-30x too high in the calibration half did no harm against their twins. Nor for an optimizer
  that sets its own step length (``SELF_SIZED_OPTIMIZERS``: L-BFGS's line search, preconditioned
  and orthogonalised steps): a healthy L-BFGS run on digits (strong Wolfe, loss 2.31 -> 0.65 in 9
  steps, 98% train accuracy) moved its weights by 47% of their norm per step and was rolled back.
  The output layer is left out of that median (a model that is only its head has none): a
  classifier's head grows from its small init in the first steps, so its relative steps are
  large in a healthy run (a trial: logistic regression on digits, SGD 0.05 with momentum 0.9,
  read 0.05-0.07 at steps 4-16, and autofix cut its rate: held-out accuracy 0.92 -> 0.89-0.91);
  the suites' scores are the same with the head left out. A sample taken while
  a schedule takes the rate up (``ramping``: above ``RAMP_RISE`` x its value at half the step, a
  warm-up or the first phase of one-cycle) is not read: large steps are the schedule's purpose
  there, and a rate past stability then shows as a blow-up or spikes. A healthy BatchNorm ResNet
  under OneCycleLR (SGD, peak 0.4, super-convergence) read 5.2% at step 40 and was called a
  learning rate far too high; the suites' rate faults run at a constant rate.

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
    matrix,
    profile_layers,
    sampled,
    side_drops,
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
#: an overshoot needs a step that is large next to the weights (10x the ~1e-3 rule of thumb)
SPIKE_MIN_UPDATE = 0.01
#: a loss level at this multiple of its start, up to the last record, has diverged
DIVERGE_RATIO = 3.0
DIVERGE_WINDOW = 20
#: median update/weight ratio over the layers: steps too large for the weights
UPDATE_TOO_BIG = 0.035
UPDATE_PERSIST = 2
#: samples before this step are not read (Adam's normalised first steps)
UPDATE_FROM_STEP = 4
#: a sample where the rate is above this x its value at half the step is on a deliberate ramp
RAMP_RISE = 1.1
#: optimizer class names (lower case, substrings) whose steps are normalised per coordinate
ADAPTIVE_OPTIMIZERS = ("adam", "rmsprop", "adagrad", "adadelta", "adafactor", "lamb", "lion")
#: optimizers whose step length is not the learning rate times the gradient (optimizer class names, lower case)
SELF_SIZED_OPTIMIZERS = ("lbfgs", "shampoo", "soap", "muon", "sophia", "prodigy", "dadapt")

REF_SIGNAL = ("He, Zhang, Ren & Sun 2015 (ICCV, sec. 2.2); Poole et al. 2016 (NeurIPS, sec. 3: "
              "the chaotic regime)")
REF_UPDATES = ("Karpathy, CS231n notes (ratio of updates to weights ~1e-3); You, Gitman & Ginsburg "
               "2017 (LARS, sec. 3); Hoffer et al. 2018 (NeurIPS, Norm matters, sec. 2)")
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
    drops = side_drops(np.array(rows))
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


def median_update_ratios(meta: dict, steps: list[dict], body: bool = False) -> tuple[list[int], np.ndarray]:
    """(sampled step numbers, median over the trainable weight layers of ``update_ratio``);
    with ``body``, the output layer left out (``([], [])`` when no other layer is left).

    Example:
        >>> meta = {"layers": [{"name": n, "kind": "linear"} for n in "abc"]}
        >>> median_update_ratios(meta, [{"step": 2, "update_ratio": {"a": 0.1, "b": 0.2, "c": 0.3}}])
        ([2], array([0.2]))
    """
    names = profile_layers(meta)
    if body:
        heads = {ly["name"] for ly in meta.get("layers", []) if ly.get("is_output")}
        names = [n for n in names if n not in heads]
    st = sampled(used_steps(steps), "update_ratio")
    if not st or not names:
        return [], np.array([])
    u = matrix(st, "update_ratio", names)
    with np.errstate(all="ignore"):
        med = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in u])
    return [int(s.get("step", 0)) for s in st], med


def oversized_updates(meta: dict, steps: list[dict]) -> Finding | None:
    """Median update/weight ratio >= ``UPDATE_TOO_BIG`` on ``UPDATE_PERSIST`` samples in a row from step
    ``UPDATE_FROM_STEP`` under a non-adaptive optimizer, or None.

    Example:
        >>> meta = {"layers": [{"name": "a", "kind": "linear"}], "config": {"optimizer": "SGD"}}
        >>> steps = [{"step": t, "update_ratio": {"a": 0.08}} for t in (1, 2, 4, 8, 16)]
        >>> oversized_updates(meta, steps).evidence["median_update_ratio"]
        0.08
        >>> oversized_updates({**meta, "config": {"optimizer": "AdamW"}}, steps) is None
        True
    """
    opt = str((meta.get("config") or {}).get("optimizer") or "").lower()
    if any(a in opt for a in (*ADAPTIVE_OPTIMIZERS, *SELF_SIZED_OPTIMIZERS)):
        return None
    ids, med = median_update_ratios(meta, steps, body=True)
    keep = [k for k, t in enumerate(ids) if t >= UPDATE_FROM_STEP]
    ids, med = [ids[k] for k in keep], med[keep]
    up = ramping(steps, ids)
    flags = [bool(np.isfinite(v) and v >= UPDATE_TOO_BIG) and not r for v, r in zip(med, up)]
    i = first_persistent(flags, UPDATE_PERSIST) if len(flags) >= UPDATE_PERSIST else None
    if i is None:
        return None
    peak = float(np.nanmax(med))
    ev = {"median_update_ratio": round(float(med[i]), 4), "peak_median_update_ratio": round(peak, 4),
          "threshold": UPDATE_TOO_BIG, "samples_over": int(sum(flags)), "samples": len(flags)}
    msg = (f"each step moves the weights by {med[i]:.1%} of their norm (median over the layers; "
           f"up to {peak:.1%}) on {sum(flags)} of {len(flags)} sampled steps, against ~0.1% in a "
           "healthy run: the learning rate is far too high for these weights")
    return Finding("exploding-gradient", "error", msg, [], ev, ["lower-lr", "clip-norm", "warmup"],
                   ids[i], REF_UPDATES)


def ramping(steps: list[dict], ids: list[int]) -> list[bool]:
    """Per step of ``ids``: the learning rate there is above ``RAMP_RISE`` x its value at half that
    step (a warm-up or one-cycle schedule taking the rate up on purpose).

    Example:
        >>> steps = [{"step": t, "lr": min(0.4, 0.01 * t)} for t in range(1, 101)]
        >>> ramping(steps, [16, 32, 90])
        [True, True, False]
    """
    lr = {int(s.get("step", 0)): as_float(s.get("lr")) for s in used_steps(steps)}
    known = sorted(t for t, v in lr.items() if math.isfinite(v) and v > 0)
    out = []
    for t in ids:
        before = [u for u in known if u <= t // 2]
        now = lr.get(t, math.nan)
        out.append(bool(before and math.isfinite(now) and now > RAMP_RISE * lr[before[-1]]))
    return out


def loss_spikes(meta: dict, steps: list[dict]) -> Finding | None:
    """>= ``MIN_SPIKES`` steps whose loss jumps >= ``SPIKE_RATIO`` x back toward its start, or None."""
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    loss = np.array([as_float(s["loss"]) for s in st])
    if len(loss) < SPIKE_WINDOW + START_LOSSES:
        return None
    start = float(np.median(loss[:START_LOSSES]))
    recent = np.median(np.lib.stride_tricks.sliding_window_view(loss[:-1], SPIKE_WINDOW), axis=1)  # [t-W, t)
    spikes = [int(t) for t in np.flatnonzero((loss[SPIKE_WINDOW:] >= SPIKE_RATIO * recent)
                                             & (loss[SPIKE_WINDOW:] >= SPIKE_FLOOR * start)) + SPIKE_WINDOW]
    if len(spikes) < MIN_SPIKES:
        return None
    _, med = median_update_ratios(meta, steps)
    if len(med) and not np.nanmax(np.where(np.isfinite(med), med, 0.0)) >= SPIKE_MIN_UPDATE:
        return None  # small steps: spikes of a converged run's heavy-tailed losses, no overshoot
    t = spikes[MIN_SPIKES - 1]
    ev = {"loss_spikes": len(spikes), "spike_frac": round(len(spikes) / len(loss), 3),
          "spike_ratio": SPIKE_RATIO, "min_spikes": MIN_SPIKES, "loss_start": round(start, 4),
          "first_spike_step": int(st[spikes[0]].get("step", 0))}
    msg = (f"the loss jumped to >= {SPIKE_RATIO:g}x its recent level, back toward its start, on "
           f"{len(spikes)} of {len(loss)} steps without a NaN: the steps overshoot (learning rate "
           "past the stability limit)")
    return Finding("exploding-gradient", "error", msg, [], ev, ["lower-lr", "clip-norm", "warmup"],
                   int(st[t].get("step", 0)), REF_SPIKES)


def diverged(meta: dict, steps: list[dict]) -> Finding | None:
    """The loss level (median of ``DIVERGE_WINDOW`` finite losses) at >= ``DIVERGE_RATIO`` x its start
    (the first loss, or the median of the first ``START_LOSSES`` when lower: the trial's runs were
    at 23 by their second step), from some window to the last one, while the steps are
    large (as ``loss_spikes``: the largest sampled median update ratio >= ``SPIKE_MIN_UPDATE``), or
    None. A learning rate so far past stability that the loss jumps up and stays, finite and with
    no spike left to count (a trial: GPT-NeoX, Phi and Falcon at AdamW 1.0 went from 3.47 to 40-200
    and sat there, gradient norm 1.6 -> 50: no finding). Losses below zero (a policy-gradient or
    a log-likelihood objective) are not read; a GAN's generator loss rises too, but at ~1e-3 steps.

    Example:
        >>> meta = {"layers": [{"name": "a", "kind": "linear"}]}
        >>> steps = [{"step": t, "loss": 3.5 if t < 5 else 60.0, "update_ratio": {"a": 0.5}} for t in range(1, 41)]
        >>> diverged(meta, steps).evidence["loss_ratio"]
        17.1
        >>> diverged(meta, [{**s, "update_ratio": {"a": 1e-3}} for s in steps]) is None
        True
    """
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    loss = np.array([as_float(s["loss"]) for s in st])
    if len(loss) < DIVERGE_WINDOW or (loss < 0).any():
        return None
    start = min(float(loss[0]), float(np.median(loss[:START_LOSSES])))  # the first loss: a jump at step 2
    if not start > 0:
        return None
    if not np.median(loss[-DIVERGE_WINDOW:]) >= DIVERGE_RATIO * start:
        return None  # the usual case, read from the last window alone
    levels = np.median(np.lib.stride_tricks.sliding_window_view(loss, DIVERGE_WINDOW), axis=1)
    over = levels >= DIVERGE_RATIO * start
    _, med = median_update_ratios(meta, steps)
    if len(med) and not np.nanmax(np.where(np.isfinite(med), med, 0.0)) >= SPIKE_MIN_UPDATE:
        return None  # small steps: a loss that rises on its own (a GAN's generator), no overshoot
    first = int(np.argmax(over))  # the first flagged window starts at loss index ``first``
    at = first + int(np.argmax(loss[first:] >= DIVERGE_RATIO * start))
    ratio = float(levels[-1]) / start
    ev = {"loss_start": round(start, 4), "loss_level": round(float(levels[-1]), 4), "loss_ratio": round(ratio, 1),
          "threshold_ratio": DIVERGE_RATIO, "diverged_step": int(st[at].get("step", 0))}
    msg = (f"the loss rose to {ratio:.1f}x its starting level and stays there (median of the last "
           f"{DIVERGE_WINDOW} losses {levels[-1]:.4g} against {start:.4g} at the start, above "
           f"{DIVERGE_RATIO:g}x since step {ev['diverged_step']}): the steps overshoot - the learning rate is far "
           "past the stability limit")
    return Finding("exploding-gradient", "error", msg, [], ev, ["lower-lr", "clip-norm", "warmup"],
                   ev["diverged_step"], REF_SPIKES)


__all__ = ["ADAPTIVE_OPTIMIZERS", "SELF_SIZED_OPTIMIZERS", "SIGNAL_ORDERS", "UPDATE_TOO_BIG", "diverged", "loss_spikes", "median_update_ratios", "oversized_updates",
           "signal_growth"]
