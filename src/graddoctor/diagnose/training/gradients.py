"""Gradient-profile rules: vanishing-gradient, exploding-gradient, stalled-layers.

All three read a *profile*: one log10 number per weight layer (linear, conv,
rnn, attention; norm gains and embeddings left out), input side first, and
compare the median of the input-side third with the median of the output-side
third. The number per layer is scale-free:

- gradients: the relative gradient ``||g|| / ||w||`` (the step SGD takes per
  unit of learning rate, relative to the weights; invariant to a layer's size);
- updates: watch's ``update_ratio = ||w_t - w_{t-1}|| / ||w||``.

Frozen layers (``grad_norm`` null, or ``trainable`` False) and AMP-skipped steps
never enter a profile. Thresholds are in orders of magnitude between the two
sides; the per-layer rate (orders per layer) is reported as depth-normalised
evidence.

Example:
    >>> meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(6)]}
    >>> steps = [{"step": t, "grad_norm": {str(i): 10.0 ** (i - 8) for i in range(6)},
    ...           "weight_norm": {str(i): 1.0 for i in range(6)}} for t in range(5)]
    >>> [f.code for f in vanishing_gradient(meta, steps)]
    ['vanishing-gradient']
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor import kinds
from graddoctor.diagnose.thresholds import (
    MIN_LAYERS,
    REF_VANISH,
    STALL_ORDERS,
    VANILLA_RNN_TYPES,
    VANISH_ORDERS,
)
from graddoctor.diagnose.training import instability
from graddoctor.diagnose.training.dead_branches import dead_branches
from graddoctor.diagnose.training.progress import flat_since
from graddoctor.diagnose.training.series import (
    LOG_FLOOR,
    UPDATE_FLOOR,
    ZERO_LOG,
    as_float,
    dead_body,
    head_step,
    later_dead_path,
    log10_safe,
    matrix,
    near_zero_rows,
    nonfinite_step,
    persistent_profile,
    profile_layers,
    rose,
    sampled,
    side_drop,
    transient,
    used_steps,
)
from graddoctor.diagnose.training.through_time import vanishing_through_time
from graddoctor.report import Finding

# shared with loss-plateau, in graddoctor.diagnose.thresholds: VANISH_ORDERS (input side this
# many orders below the output side: vanishing), STALL_ORDERS (the same for update ratios:
# stalled), MIN_LAYERS (fewest layers for a profile), and REF_VANISH

#: the seed's rule of thumb: a drop of more than 3-4 orders is vanishing beyond doubt
RULE_OF_THUMB_ORDERS = (3, 4)
#: input side this many orders above the output side -> exploding across layers
EXPLODE_ORDERS = 2.0
#: global gradient norm this many orders above its value at the first step, with the loss
#: no lower than at that step -> blow-up
EXPLODE_GROWTH_ORDERS = 2.0
#: a blow-up without a NaN drives the loss up: the loss at the step at least this many
#: times the median of the first ``START_LOSSES`` (the healthy LSTM of issue 14 grows its norm
#: 2 orders from 0.04 while its loss holds at log(10))
LOSS_RISE = 1.2
START_LOSSES = 5
#: a blow-up is a norm still climbing: at least this many orders above its highest level
#: ``SETTLED_STEPS`` steps earlier (a GAN generator whose norm left 0.02 while its critic
#: learnt, then held ~2 for 80 steps, is no blow-up; the realistic suite's slowest one rose
#: 1.65 orders in 20 steps)
SETTLED_RISE_ORDERS, SETTLED_STEPS = 0.5, 50
#: growth before a non-finite step that marks it as the end of a blow-up
PRE_NAN_GROWTH_ORDERS = 1.0
#: an SGD step larger than the weights themselves (||update|| / ||w||) just before a
#: non-finite step marks that step as the end of a blow-up (healthy runs take ~1e-3)
MAX_UPDATE_RATIO = 1.0
#: consecutive steps (samples, for updates) the pattern must hold
PERSIST = 3
PERSIST_SAMPLED = 2

REF_EXPLODE = "Pascanu, Mikolov & Bengio 2013 (ICML, sec. 2.1 and 3.2: gradient norm clipping)"
REF_STALL = (
    "Glorot & Bengio 2010 (AISTATS, sec. 4.2); You, Gitman & Ginsburg 2017 "
    "(LARS, sec. 3: layer-wise ||update||/||w||)"
)


def relative_gradient(meta: dict, steps: list[dict], near_zero: bool = False
                      ) -> tuple[list[str], list[int], np.ndarray]:
    """(layers, step numbers, [steps x layers] log10 ||g||/||w||) over non-skipped steps; with
    ``near_zero``, NaN where the weights are near zero (``series.near_zero_rows``).

    Example:
        >>> meta = {"layers": [{"name": "a", "kind": "linear"}]}
        >>> relative_gradient(meta, [{"step": 0, "grad_norm": {"a": 0.1}, "weight_norm": {"a": 10.0}}])[2]
        array([[-2.]])
    """
    names = profile_layers(meta)
    st = [s for s in used_steps(steps) if s.get("grad_norm")]
    g = matrix(st, "grad_norm", names)
    w = matrix(st, "weight_norm", names)
    small = near_zero_rows(meta, w, names) if near_zero else None
    w[~(w > 1e-12)] = np.nan  # zero-initialised weights have no relative scale
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = log10_safe(g) - np.log10(w)
    if small is not None:
        rel[small] = np.nan
    return names, [int(s.get("step", i)) for i, s in enumerate(st)], rel


def _layer_info(meta: dict) -> dict[str, dict]:
    return {ly["name"]: ly for ly in meta.get("layers", [])}


def decay_remedies(meta: dict, layers: list[str]) -> list[str]:
    """Remedies, best first, for a signal decaying towards the input side of ``layers``.

    Saturating activations -> relu, batchnorm, residual; a vanilla RNN -> lstm;
    a ReLU chain without skips -> residual, he-init; otherwise normalisation first. A model that
    has norm layers already is not told to add BatchNorm (a stock MobileViT, BatchNorm throughout).
    """
    has_norm = any(ly.get("kind") == "norm" for ly in meta.get("layers", []))
    ranked = _decay_remedies(meta, layers)
    return [r for r in ranked if r != "batchnorm"] or ranked if has_norm else ranked


def _decay_remedies(meta: dict, layers: list[str]) -> list[str]:
    info = _layer_info(meta)
    fams = {kinds.family(info.get(n, {}).get("activation")) for n in layers}
    types = {info.get(n, {}).get("type", "") for n in layers}
    skips = any(
        (info[n].get("min_depth") or 0) + 1 < (info[n].get("depth") or 0) for n in layers if n in info
    )
    if types & set(VANILLA_RNN_TYPES):
        return ["lstm", "orthogonal-init", "clip-norm"]
    if "saturating" in fams:
        return ["relu", "batchnorm", "residual"]
    if skips:
        return ["he-init", "batchnorm", "rezero"]
    return ["residual", "he-init", "batchnorm"]


def _profile_evidence(names: list[str], prof: np.ndarray, drop: float, rate: float, n: int) -> dict:
    keep = np.isfinite(prof)
    k = max(1, n // 3)
    vals = prof[keep]
    return {
        "drop_orders": round(drop, 2),
        "orders_per_layer": round(rate, 3),
        "n_layers": n,
        "input_side_log10": round(float(np.median(vals[:k])), 2),
        "output_side_log10": round(float(np.median(vals[-k:])), 2),
        "profile_log10": [round(float(v), 2) for v in vals],
        "profile_layers": [nm for nm, ok in zip(names, keep) if ok],
    }


def vanishing_gradient(meta: dict, steps: list[dict]) -> list[Finding]:
    """Input-side relative gradients >= ``VANISH_ORDERS`` orders below the output side.

    Example:
        >>> vanishing_gradient({"layers": []}, [])
        []
    """
    names, ids, logs = relative_gradient(meta, steps, near_zero=True)
    hit = persistent_profile(logs, +1.0, VANISH_ORDERS, PERSIST, MIN_LAYERS)
    cut = dead_body(logs, MIN_LAYERS) if hit is None else None  # a cut above the whole body
    if hit is None and cut is None:
        return dead_branches(meta, steps) or vanishing_through_time(meta, steps)
    (i, prof, drops), died = hit or cut, None if cut is None else ids[cut[0]]
    if head_step(prof, MIN_LAYERS) and not (prof <= ZERO_LOG).any():  # a head above a flat body
        hit = later_dead_path(logs, i, VANISH_ORDERS, PERSIST, MIN_LAYERS)  # unless the body dies later
        if hit is None:
            return vanishing_through_time(meta, steps)
        i, prof, drops = hit
        died = ids[i]
    drop, rate, n = side_drop(prof)
    prof_ev = _profile_evidence(names, prof, drop, rate, n)
    ev = {"drop_orders": prof_ev.pop("drop_orders"), "orders_per_layer": prof_ev.pop("orders_per_layer"),
          "rule_of_thumb_orders": list(RULE_OF_THUMB_ORDERS),
          "exceeds_rule_of_thumb": bool(drop > RULE_OF_THUMB_ORDERS[0]),
          "threshold_orders": VANISH_ORDERS, **prof_ev,
          "steps_flagged_frac": round(float(np.mean([d >= VANISH_ORDERS for d in drops])), 2)}
    affected = ev["profile_layers"][: max(1, n // 3)]
    zeros = sum(v <= ZERO_LOG for v in ev["profile_log10"])
    ev["zero_gradient_layers"] = zeros
    if died is not None:  # the loss since the body died: flat is harm (the policy's)
        ev["stuck_after_settling"] = flat_since(steps, died)
    if ev["input_side_log10"] <= ZERO_LOG or cut is not None:
        top = float(np.nanmax(prof))  # a cut above the body leaves the output side's median at zero
        exact = sum(v <= LOG_FLOOR + 8 for v in ev["profile_log10"])  # a zero reads LOG_FLOOR - log10 |w|
        body = (f"{zeros} of {n} layers get exactly zero gradient (a dead path)" if zeros and exact == zeros else
                f"{zeros} of {n} layers get gradients under 10^-15 of their weights' size" if zeros else
                f"the body's gradients sit at ~10^{float(np.nanmedian(prof)):.0f} of the largest")  # ~zero, not 0
        msg = (f"no gradient reaches the input side: {body}, the output side "
               f"10^{max(ev['output_side_log10'], top):.1f} relative"
               + (f" (since step {died}: something above the whole body passes no gradient - a zeroed norm "
                  "gain or weight, or activations saturated flat)" if cut else ""))
    else:
        msg = (
            f"gradients shrink by {drop:.1f} orders of magnitude from the output side to the input "
            f"side ({rate:.2f} orders per layer over {n} layers); flagged from {VANISH_ORDERS:g} "
            f"orders, vanishing beyond doubt past {RULE_OF_THUMB_ORDERS[0]}-{RULE_OF_THUMB_ORDERS[1]} "
            "(rule of thumb)"
        )
    sev = "error" if drop >= RULE_OF_THUMB_ORDERS[0] else "warning"
    if cut is None and not zeros and transient([d >= VANISH_ORDERS for d in drops]):  # the policy keeps it
        sev, ev["transient"] = "info", True  # info: no harm, no autofix round
        msg += f"; a start-up transient: flagged on {ev['steps_flagged_frac']:.0%} of the steps, not since"
    return [Finding("vanishing-gradient", sev, msg, affected, ev,
                    decay_remedies(meta, ev["profile_layers"]), ids[i], REF_VANISH)]


def _global_norm(meta: dict, steps: list[dict]) -> tuple[list[int], np.ndarray, np.ndarray]:
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    st = [s for s in used_steps(steps) if s.get("grad_norm")]
    g = matrix(st, "grad_norm", names)
    finite_rows = np.all(np.isfinite(g) | np.isnan(g), axis=1) & ~np.any(np.isinf(g), axis=1)
    with np.errstate(invalid="ignore"):
        total = np.sqrt(np.nansum(g ** 2, axis=1))
    bad = np.array([nonfinite_step(s) for s in st], dtype=bool) | ~finite_rows
    total[bad] = np.nan
    return [int(s.get("step", i)) for i, s in enumerate(st)], total, bad


def _max_update_ratio(meta: dict, steps: list[dict], before: int) -> float:
    """Largest finite update/weight ratio of a trainable layer on a used step before ``before``."""
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    st = [s for s in sampled(used_steps(steps), "update_ratio") if int(s.get("step", 0)) < before]
    u = matrix(st, "update_ratio", names)
    w = matrix(st, "weight_norm", names)
    u[~(np.isfinite(u) & (w > 1e-12))] = np.nan  # zero-initialised weights have no scale
    return float(np.nanmax(u)) if np.isfinite(u).any() else 0.0


def _overflow(meta: dict, steps: list[dict]) -> Finding | None:
    """A layer whose gradient norm is +inf while its values are finite: beyond float range."""
    for s in used_steps(steps):
        g, nf = s.get("grad_norm") or {}, s.get("nonfinite") or {}
        layers = [n for n, v in g.items() if as_float(v) == math.inf and not nf.get(n)]
        if layers:
            ev = {"overflowed_layers": len(layers), "loss": as_float(s.get("loss"))}
            msg = (f"gradient norms overflowed float32 (> 3.4e38) at step {s.get('step')} "
                   "while every gradient value was finite")
            return Finding("exploding-gradient", "error", msg, layers, ev, ["clip-norm", "lower-lr"],
                           s.get("step"), REF_EXPLODE)
        if nonfinite_step(s):
            return None
    return None


def _blowup(meta: dict, steps: list[dict]) -> Finding | None:
    """The over-steps half of ``exploding_gradient``: global norm growth, or growth before a NaN."""
    over = _overflow(meta, steps)
    grew = _growth(meta, steps)
    found = [f for f in (over, grew) if f is not None]
    return min(found, key=lambda f: f.step or 0) if found else None


def _growth(meta: dict, steps: list[dict]) -> Finding | None:
    ids, total, bad = _global_norm(meta, steps)
    finite = np.where(np.isfinite(total) & (total > 0))[0]
    if not len(finite):
        return None
    f0 = finite[0]
    base = float(total[f0])
    with np.errstate(all="ignore"):
        growth = np.log10(np.where(np.isfinite(total) & (total > 0), total, np.nan) / base)
    st = [s for s in used_steps(steps) if s.get("grad_norm")]
    loss = np.array([as_float(s.get("loss")) for s in st])
    for j in range(f0 + 1, len(total)):
        # growth that settles while the loss holds is a net leaving a tiny initial norm (an LSTM
        # whose first norm is 0.04 reaches ~4.5 in 20 steps), not a blow-up: a blow-up without a
        # NaN drives the loss up (the loss at that step >= LOSS_RISE x the median of the first
        # START_LOSSES losses before it; read only where the norm grew: a check reads every step)
        if np.isfinite(growth[j]) and growth[j] >= EXPLODE_GROWTH_ORDERS and rose(loss, f0, j, START_LOSSES, LOSS_RISE) \
                and _climbing(ids, growth, f0, j):
            how = f"grew {growth[j]:.1f} orders of magnitude above its first value"
            break
        if bad[j]:
            with np.errstate(all="ignore"):
                prev = float(np.nanmax(growth[f0:j]))
            big = _max_update_ratio(meta, steps, ids[j])
            if prev >= PRE_NAN_GROWTH_ORDERS:
                how = f"grew {prev:.1f} orders of magnitude, then went non-finite"
                break
            if big >= MAX_UPDATE_RATIO:
                how = f"went non-finite right after a step {big:.3g}x the size of the weights"
                break
            return None
    else:
        return None
    with np.errstate(all="ignore"):
        peak = float(np.nanmax(total[: j + 1]))
        orders = float(np.nanmax(growth[f0: j + 1]))
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    g = matrix([s for s in used_steps(steps) if s.get("grad_norm")], "grad_norm", names)
    with np.errstate(all="ignore"):
        peak_layer = np.nanmax(np.where(np.isfinite(g[: j + 1]), g[: j + 1], np.nan), axis=0)
    order = np.argsort(-np.nan_to_num(peak_layer, nan=-1.0))
    layers = [names[k] for k in order[:4] if np.isfinite(peak_layer[k])]
    ev = {"growth_orders": round(orders, 2), "threshold_orders": EXPLODE_GROWTH_ORDERS,
          "first_grad_norm": base, "peak_grad_norm": peak, "first_step": ids[f0],
          "blowup_step": ids[j], "max_update_ratio": _max_update_ratio(meta, steps, ids[j] + 1)}
    msg = f"the gradient norm {how} ({base:.3g} -> {peak:.3g} by step {ids[j]})"
    return Finding("exploding-gradient", "error", msg, layers, ev, ["clip-norm", "lower-lr"],
                   ids[j], REF_EXPLODE)


def _climbing(ids: list[int], growth: np.ndarray, f0: int, j: int) -> bool:
    """Growth at row ``j`` >= ``SETTLED_RISE_ORDERS`` above its peak up to ``SETTLED_STEPS`` steps
    before (a level the norm reached and held is no blow-up; before then, the first value)."""
    old = [k for k in range(f0, j) if ids[k] <= ids[j] - SETTLED_STEPS and np.isfinite(growth[k])]
    return growth[j] - max([0.0, *(float(growth[k]) for k in old)]) >= SETTLED_RISE_ORDERS


def exploding_gradient(meta: dict, steps: list[dict]) -> list[Finding]:
    """Gradient norms that blow up over steps, or grow by orders towards the input side.

    Over steps: the global norm reaches ``EXPLODE_GROWTH_ORDERS`` orders above its
    first value while the loss rises, or rises ``PRE_NAN_GROWTH_ORDERS`` before a non-finite
    step. On the sampled forwards: the activation scale grows by orders with depth (the
    backpropagated signal grows as much toward the input while the weight-gradient profile
    stays balanced); on the loss: repeated spikes, or a level that jumped to several times its
    start and stays; on the sampled updates: steps of several
    percent of the weights (``instability``).
    AMP-skipped steps are not explosions and are never read.

    Example:
        >>> exploding_gradient({"layers": []}, [])
        []
    """
    paths = (instability.signal_growth, instability.loss_spikes, instability.diverged, instability.oversized_updates)
    out = [f for f in [_blowup(meta, steps), *(p(meta, steps) for p in paths)] if f is not None]
    names, ids2, logs = relative_gradient(meta, steps)
    logs[logs <= ZERO_LOG] = np.nan  # an exact zero is no magnitude: a dead branch (vanishing's)
    hit2 = persistent_profile(logs, -1.0, EXPLODE_ORDERS, PERSIST, MIN_LAYERS)
    if hit2 is not None:
        i, prof, _ = hit2
        drop, rate, n = side_drop(prof)
        ev = _profile_evidence(names, prof, drop, rate, n)
        ev["threshold_orders"] = EXPLODE_ORDERS
        msg = (f"gradients grow by {-drop:.1f} orders of magnitude from the output side to the "
               f"input side ({-rate:.2f} orders per layer over {n} layers)")
        affected = ev["profile_layers"][: max(1, n // 3)]
        info = _layer_info(meta)
        saturating = any(kinds.family(info.get(nm, {}).get("activation")) == "saturating"
                         for nm in affected)
        rem = ["clip-norm", "lower-lr", "xavier-init" if saturating else "he-init"]
        out.append(Finding("exploding-gradient", "error", msg, affected, ev, rem, ids2[i], REF_EXPLODE))
    out.sort(key=lambda f: f.step or 0)  # one finding: the earliest sign of the blow-up
    return out[:1]


def stalled_layers(meta: dict, steps: list[dict]) -> list[Finding]:
    """Input-side update ratios >= ``STALL_ORDERS`` orders below the output side.

    Example:
        >>> stalled_layers({"layers": []}, [])
        []
    """
    names = profile_layers(meta)
    st = sampled(used_steps(steps), "update_ratio")
    if not st:
        return []
    u = matrix(st, "update_ratio", names)
    g = matrix(st, "grad_norm", names)
    u[np.isnan(g) & np.array([bool(s.get("grad_norm")) for s in st])[:, None]] = np.nan
    logs = log10_safe(u, UPDATE_FLOOR)  # a zero step under a non-zero gradient rounded away
    logs[(u == 0) & (g == 0)] = LOG_FLOOR  # no gradient at all: a dead path
    ids = [int(s.get("step", i)) for i, s in enumerate(st)]
    hit = persistent_profile(logs, +1.0, STALL_ORDERS, PERSIST_SAMPLED, MIN_LAYERS)
    if hit is None:
        return []
    i, prof, _ = hit
    drop, rate, n = side_drop(prof)
    ev = {**_profile_evidence(names, prof, drop, rate, n), "threshold_orders": STALL_ORDERS}
    affected = ev["profile_layers"][: max(1, n // 3)]
    below = {LOG_FLOOR: " (no gradient at all)", UPDATE_FLOOR: " (steps below float32 "
             "resolution round away)"}.get(ev["input_side_log10"], "")
    msg = (f"input-side layers update {drop:.1f} orders of magnitude less (relative to their "
           f"weights) than output-side layers: median update/weight 10^{ev['input_side_log10']:.1f}"
           f"{below} vs 10^{ev['output_side_log10']:.1f}")
    return [Finding("stalled-layers", "warning", msg, affected, ev,
                    decay_remedies(meta, ev["profile_layers"]), ids[i], REF_STALL)]
