"""Rules over the init probe (``graddoctor.measure.probe.ProbeResult``): findings with ``step=0``.

Thresholds are orders of magnitude (log10) of the measured quantity over the
whole depth (or the whole sequence), as in the practitioners' rule of thumb
"a drop of more than 3-4 orders between the output and the input side is
vanishing": ``WARN_ORDERS`` (2) gives a warning, ``ERROR_ORDERS`` (4) an error.

Depth trend, scale-free and robust to layers of different kinds: layers are
grouped by *role* (their name with whole-number path components replaced by
``#``: ``h.3.attn.c_attn`` -> ``h.#.attn.c_attn``) and kind (a pooled head is not compared
with the convolutions under it), a line of log10(value) against the layer's position is fitted
in each role of 3 or more layers (without any, of 2), the slopes' median (weighted by role size)
is the per-layer rate (``checktime.trend``). Without any repeated role, one line over the chain.
Layers with an exactly-zero gradient never enter a trend (``zero_gradient_layers``); exactly-zero
weights that get no gradient themselves never move, and the layers they cut off never train (an error); so do zero weights
that still get no gradient once the zero weights that get one have moved (a stationary point,
``graddoctor.measure.probe_zero``: a zero norm gain in front of a SwiGLU MLP). So a transformer's
q/k projections (small gradients at init, uniform attention) do not pass for
vanishing next to its MLP projections: only a trend along depth counts.
A layer whose every use ends in a normalisation (``ModelMap`` ``scale_free``: OLMo-2's branches,
normalised before the residual add) has no size of its own: its dL/d(output) goes as 1/size, so it
is read as dL/dy x rms(y) (``trend.size_free``) and left out of the forward-signal trend. Trainable
layers that feed the output with no gradient back (a ``.detach()``) are ``no-gradient`` (``unreached``).

Through time: orders = log10(median of the last ~10% of steps / median of the
first ~10%) of ||dL/dx_t|| (sequences of at least ``MIN_STEPS`` steps, a threshold
shared with ``recurrence`` in ``graddoctor.diagnose.thresholds``), judged for
recurrent models only: ``gd.check`` passes in ``recurrence.recurrence(model, map)``
(for attention the profile says which steps the loss reads: it stays in the data).
Gated RNNs (LSTM/GRU) are exempt: at PyTorch's default init they too decay (about
0.2 orders per step, measured), but that decay is set by the forget gate, a
learnable quantity (Gers et al. 2000), while a vanilla RNN's is structural
(Bengio et al. 1994). The profile stays in ``report.data["probe"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import torch

from graddoctor.diagnose.checktime.trend import depth_trend, log10, role, size_free, trend_of_logs
from graddoctor.diagnose.checktime.unreached import no_gradient
from graddoctor.diagnose.thresholds import MIN_STEPS
from graddoctor.measure.probe import ProbeResult
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

WARN_ORDERS = 2.0
ERROR_ORDERS = 4.0

REF_VANISHING = "Hochreiter 1991; Bengio, Simard & Frasconi 1994; Glorot & Bengio 2010"
REF_EXPLODING = "Pascanu, Mikolov & Bengio 2013; He et al. 2015"
REF_SIGNAL = "Poole et al. 2016; Schoenholz et al. 2017; He et al. 2015"
REF_JACOBIAN = "Pennington, Schoenholz & Ganguli 2017 (dynamical isometry)"


def zero_gradient_layers(names: Sequence[str], grads: Sequence[float],
                         zero_params: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Layers with an exactly-zero gradient: ``(vanished, not_yet_on_path)``.

    An exact zero is a multiplication by an exact zero, not a decay. Where the model holds
    trainable parameters that are exactly zero (``zero_params``: the last norm gain of a
    zero-init residual branch, ReZero's alpha, a zero-init head), those cut the gradient
    at init only - they get a gradient and move at the first step - so every zero-gradient
    layer is "not yet on the path" (``gradient_flow`` first takes out those a zero weight at a
    stationary point keeps cut off: the probe's ``zero_stationary``). Without them, a zero
    *after* a layer the gradient does reach (execution order) sits on a branch that a skip
    bypasses (not yet on the path too), while a zero run from the input side with nonzero
    gradients after it is the decay underflowing, or every unit on the path dead: vanished.
    Neither enters a depth trend, so no trend is fitted through log10(0).

    Example:
        >>> zero_gradient_layers(["stem", "b1.conv", "b2.conv", "head"], [1.0, 0.0, 0.0, 1.0])
        ([], ['b1.conv', 'b2.conv'])
        >>> zero_gradient_layers(["0", "2", "4"], [0.0, 0.0, 1e-9])
        (['0', '2'], [])
        >>> zero_gradient_layers(["0", "2", "4"], [0.0, 0.0, 1.0], zero_params=["4.weight"])
        ([], ['0', '2'])
    """
    first = next((i for i, g in enumerate(grads) if g != 0.0), len(grads))
    if first == len(grads):
        return [], []
    prefix = list(names[:first])
    later = [n for n, g in zip(names[first:], grads[first:]) if g == 0.0]
    if zero_params:
        return [], prefix + later
    return prefix, later


def _severity(orders: float) -> str | None:
    a = abs(orders)
    return "error" if a >= ERROR_ORDERS else "warning" if a >= WARN_ORDERS else None


def _profile(values: Sequence[float]) -> list[float]:
    return [round(log10(v), 2) if math.isfinite(v) else math.inf for v in values]


def _log_profile(logs: Sequence[float]) -> list[float]:
    """Rounded log10 values; an exact zero as float32's floor (-45), as ``_profile`` writes it."""
    return [round(y if y > -math.inf else log10(0.0), 2) if y < math.inf else math.inf for y in logs]


def grad_logs(p: ProbeResult) -> list[float]:
    """log10 of each profiled layer's gradient RMS: -inf for an exact zero, +inf if not finite.

    The probe's ``grad_log10`` where it has one per layer (exact below any float's range),
    else computed from ``grad_rms``.

    Example:
        >>> grad_logs(ProbeResult(layers=["0", "1"], grad_rms=[0.0, 100.0]))
        [-inf, 2.0]
    """
    if len(p.grad_log10) == len(p.layers):
        return [math.inf if math.isnan(y) else y for y in p.grad_log10]
    return [-math.inf if g == 0.0 else log10(g) for g in p.grad_rms]


def underflow_log10(dtype: str) -> float:
    """log10 of the smallest positive (subnormal) value of a float dtype: where gradients underflow.

    Example:
        >>> round(underflow_log10("float32"), 2), round(underflow_log10("bfloat16"), 2)
        (-44.85, -40.04)
    """
    dt = getattr(torch, dtype, torch.float32)
    info = torch.finfo(dt if isinstance(dt, torch.dtype) and dt.is_floating_point else torch.float32)
    return math.log10(info.tiny * info.eps)


# ---------------------------------------------------------------- rules


def gradient_flow(p: ProbeResult, m: ModelMap) -> list[Finding]:
    """``vanishing-gradient`` / ``exploding-gradient`` from dL/d(layer output) along depth.

    Read in log10 (``grad_logs``), so a gradient the probe measured below float32's range
    (its rescaled backward) counts with its true size; the evidence says how many layers lie
    below the dtype's range and from which layer (the depth from the output where an
    unscaled backward reads exact zeros).
    """
    raw = grad_logs(p)
    free = {x.name for x in m.layers if x.scale_free}  # a norm removes their size: read dL/dy x rms(y)
    logs = size_free(p.layers, raw, p.act_var, free) if free and len(p.act_var) == len(raw) else raw
    bad = [n for n, y in zip(p.layers, logs) if not y < math.inf]
    if bad:
        return [Finding(
            "exploding-gradient", "error",
            f"the init probe's gradient is not finite at {len(bad)} layer(s): it overflows at step 0",
            layers=bad, evidence={"non_finite_layers": len(bad), "first_non_finite": bad[0],
                                  "grad_log10": _log_profile(logs)},
            remedies=["he-init", "clip-norm", "batchnorm", "lower-lr"], step=0, reference=REF_EXPLODING)]
    flags = [0.0 if y == -math.inf else 1.0 for y in logs]
    stuck = p.zero_params if p.zero_params and p.zero_params_moving == [] else []
    if stuck and (dead := [n for n, f in zip(p.layers, flags) if f == 0.0]) and any(flags):
        return [_never_moving(p, m, stuck, dead, logs)]
    st = p.zero_stationary  # measured only next to zero parameters that move
    if st and st["stationary"] and st["layers"] and any(flags):  # measured until nothing else starts
        return [_stationary(p, m, st, logs)]
    vanished, dormant = zero_gradient_layers(p.layers, flags, p.zero_params)
    skip = set(dormant)
    kept = [(n, y) for n, y in zip(p.layers, logs) if n not in skip]
    nonzero = [(n, y) for n, y in kept if y > -math.inf]
    t = trend_of_logs([n for n, _ in nonzero], [y for _, y in nonzero], **_alike(p, m, [n for n, _ in nonzero]))
    if vanished and nonzero:  # exactly zero on the whole input side: the decay underflowed (or died)
        sev = "error"
        t = t if t is not None and t["orders"] > 0 else {"rate": 0.0, "orders": 0.0, "roles": 1}
    elif t is None or (sev := _severity(t["orders"])) is None:
        return []
    names = [n for n, _ in kept]
    ref = kept[-1][1]
    logs_kept = [y if y > -math.inf else log10(0.0) for _, y in kept]  # an exact zero as the floor
    evidence = {
        "orders_over_depth": round(abs(t["orders"]), 2), "orders_per_layer": round(t["rate"], 3),
        "layers_probed": len(p.layers), "grad_log10": _log_profile(raw),
        "rule_of_thumb": "a drop of more than 3-4 orders of magnitude = vanishing",
        "zero_gradient_input_side": len(vanished), "zero_gradient_not_yet_on_path": len(dormant),
    }
    if free:
        evidence["size_free_layers"] = sum(n in free for n in p.layers)  # read as dL/dy x rms(y)
    if p.jacobian:  # input-output Jacobian: RMS singular value and dispersion of s^2 (1 = isometry)
        evidence["jacobian_gain"] = p.jacobian.get("gain")
        evidence["jacobian_spread"] = p.jacobian.get("spread")
    if vanished or t["orders"] > 0:  # smaller on the input side
        layers = [n for n, y in zip(names, logs_kept) if y <= ref - WARN_ORDERS] or names[:1]
        sat = any(s.family == "saturating" and not s.is_output for s in m.activations)
        remedies = (["relu", "he-init", "batchnorm", "residual"] if sat
                    else ["he-init", "lsuv-init", "batchnorm", "residual"])
        floor = underflow_log10(p.grad_dtype)
        below = [i for i, (_, y) in enumerate(kept) if y < floor]  # exact zeros included
        zeros = ""
        if below:
            at = below[-1]  # the layer nearest the output whose gradient is below the dtype's range
            evidence.update({"dtype": p.grad_dtype, "below_dtype_range_layers": len(below),
                             "dtype_floor_log10": round(floor, 2), "below_range_from": names[at],
                             "below_range_depth_from_output": len(kept) - at,
                             "rescaled_by_2_to_the": p.grad_rescale_log2})
            how = ("measured by the probe's rescaled backward" if p.grad_rescale_log2
                   else "read as exact zeros: no unit on the path passes a gradient (a ReLU layer whose "
                        "units are all off, zero weights) or an underflow")
            zeros = (f"; below {p.grad_dtype} range (< 1e{floor:.0f}) at {len(below)} input-side layer(s), "
                     f"from {names[at]!r} ({len(kept) - at} layers from the output) on ({how})")
        trend = (f"the gradient shrinks by {abs(t['orders']):.1f} orders of magnitude from the output "
                 f"side to the input side ({t['rate']:.2f} per layer over {len(nonzero)} layers)")
        if vanished and len(nonzero) < 3:  # no trend to speak of: say what was seen
            trend = (f"no gradient reaches the input side: {len(vanished)} of {len(kept)} layers get exactly "
                     "zero gradient")
        return [Finding(
            "vanishing-gradient", sev, f"at initialisation {trend}{zeros}",
            layers=layers, evidence=evidence, remedies=remedies, step=0,
            reference=f"{REF_VANISHING}; {REF_JACOBIAN}")]
    layers = [n for n, y in zip(names, logs_kept) if y >= ref + WARN_ORDERS] or names[:1]
    return [Finding(
        "exploding-gradient", sev,
        f"at initialisation the gradient grows by {abs(t['orders']):.1f} orders of magnitude "
        f"from the output side to the input side ({-t['rate']:.2f} per layer over {len(nonzero)} layers)",
        layers=layers, evidence=evidence, remedies=["he-init", "clip-norm", "batchnorm", "lower-lr"],
        step=0, reference=f"{REF_EXPLODING}; {REF_JACOBIAN}")]


def _alike(p: ProbeResult, m: ModelMap, names: list[str]) -> dict[str, list]:
    """``trend_of_logs``'s ``chain`` (a cut of the backward graph and not an output layer),
    ``shapes`` (output shape less the batch) and ``kinds`` for ``names``; no ``chain`` where the probe did
    not mark its cuts (a ``ProbeResult`` built by hand)."""
    layers = {x.name: x for x in m.layers}
    shapes = [tuple((layers[n].output_shape or ())[1:]) if n in layers else None for n in names]
    kinds = [layers[n].kind if n in layers else "" for n in names]
    if len(p.cut) != len(p.layers):
        return {"shapes": shapes, "kinds": kinds}
    cut = dict(zip(p.layers, p.cut))
    return {"shapes": shapes, "kinds": kinds, "chain": [cut[n] and not (n in layers and layers[n].is_output) for n in names]}


def _zero_remedies(m: ModelMap, zeros: list[str]) -> list[str]:
    """Remedies for exactly-zero parameters that never move: a re-draw of zero Linear/conv weights,
    a gain of 1 for zero normalisation gains (``norm-gain``), both when both are there."""
    owners = {n.rpartition(".")[0] for n in zeros}
    kinds = {x.kind for x in m.layers if x.name in owners}
    return (["norm-gain"] if "norm" in kinds else []) + (
        ["he-init", "lsuv-init", "orthogonal-init"] if kinds - {"norm"} else [])


def _never_moving(p: ProbeResult, m: ModelMap, stuck: list[str], dead: list[str], logs: list[float]) -> Finding:
    """Layers cut off by exactly-zero weights that get no gradient themselves: nothing ever
    moves them (an all-zero init; two zero factors in series, such as a zero LayerScale gain
    after a zero output projection). A lone zero gain (ReZero, zero-init residual) gets a
    gradient at init and moves at the first step: not this."""
    shown = ", ".join(stuck[:4]) + (f", ... (+{len(stuck) - 4})" if len(stuck) > 4 else "")
    return Finding(
        "vanishing-gradient", "error",
        f"{len(dead)} of {len(p.layers)} layers get exactly zero gradient, cut off by exactly-zero weights "
        f"({shown}) that get no gradient either: nothing ever moves them, so these layers never train "
        "(an all-zero init, or two zero factors in series)",
        layers=dead, evidence={"zero_params": stuck, "zero_gradient_layers": len(dead),
                               "zero_params_moving": [], "grad_log10": _log_profile(logs)},
        remedies=_zero_remedies(m, stuck), step=0, reference=REF_VANISHING)


def _stationary(p: ProbeResult, m: ModelMap, st: dict[str, list[str]], logs: list[float]) -> Finding:
    """Layers cut off by exactly-zero weights that still get no gradient once the zero weights that do
    get one have moved (``graddoctor.measure.probe_zero``): a stationary point, such as a zero norm gain
    in front of a SwiGLU MLP (read to second order). The zeros they unlock were moved in turn until
    none started (``started``), so no later step unlocks them."""
    still, layers = st["stationary"], st["layers"]
    shown = ", ".join(still[:4]) + (f", ... (+{len(still) - 4})" if len(still) > 4 else "")
    return Finding(
        "vanishing-gradient", "error",
        f"{len(layers)} of {len(p.layers)} layers get exactly zero gradient, and still do once the zero "
        f"weights that get one ({len(p.zero_params_moving or []) + len(st['started'])}) have moved: they "
        f"are cut off by exactly-zero weights ({shown}) at a stationary point (a gated branch such as SwiGLU reads them "
        "only to second order), so nothing ever moves them and these layers never train - "
        "initialise those weights nonzero (a norm gain to 1)",
        layers=layers, evidence={"zero_gradient_layers": len(layers), "zero_params_stationary": still,
                                 "zero_params_moving": p.zero_params_moving, "zero_params_started": st["started"],
                                 "grad_log10": _log_profile(logs)},
        remedies=_zero_remedies(m, still), step=0,
        reference=REF_VANISHING)


def signal_propagation(p: ProbeResult, m: ModelMap) -> list[Finding]:
    """``signal-collapse`` / ``signal-explosion`` from the variance of each layer's output.

    Orders are of the standard deviation (half the log10 of the variance ratio).
    """
    bad = [n for n, v in zip(p.layers, p.act_var) if not math.isfinite(v)]
    if bad:
        return [Finding(
            "signal-explosion", "error",
            f"the forward signal overflows at initialisation ({len(bad)} layer(s) with non-finite "
            f"outputs, from {bad[0]!r} on)",
            layers=bad, evidence={"non_finite_layers": len(bad), "first_non_finite": bad[0],
                                  "var_log10": _profile(p.act_var)},
            remedies=["he-init", "lsuv-init", "batchnorm", "layernorm"], step=0, reference=REF_SIGNAL)]
    # an exactly constant output with live layers after it is cut by a zero weight (a zeroed norm
    # gain), not a collapse: a collapse that underflows to zero runs to the output side
    # and a layer whose every use ends in a normalisation has no size of its own (modelmap.scale)
    # and a layer whose weight is exactly zero at init (a zero-init residual branch's last layer,
    # Fixup, a flow's zero-init coupling) outputs no signal by design: not a layer of the profile
    zeroed = {n.rpartition(".")[0] for n in p.zero_params if n.rpartition(".")[2] == "weight"}
    last = max((i for i, v in enumerate(p.act_var) if v > 0 and p.layers[i] not in zeroed), default=-1)
    free = {x.name for x in m.layers if x.scale_free} | zeroed
    keep = [i for i, v in enumerate(p.act_var) if (v > 0 or i > last) and p.layers[i] not in free]
    t = depth_trend([p.layers[i] for i in keep], [p.act_var[i] for i in keep])
    if t is None or (sev := _severity(t["orders"] / 2)) is None:
        return []
    std_orders = t["orders"] / 2
    evidence = {"std_orders_over_depth": round(abs(std_orders), 2),
                "var_orders_per_layer": round(t["rate"], 3), "var_log10": _profile(p.act_var)}
    if std_orders < 0:
        return [Finding(
            "signal-collapse", sev,
            f"at initialisation the forward signal's scale shrinks by {-std_orders:.1f} orders of "
            f"magnitude over {len(p.layers)} layers",
            layers=p.layers[len(p.layers) // 2:], evidence=evidence,
            remedies=["he-init", "lsuv-init", "batchnorm"], step=0, reference=REF_SIGNAL)]
    return [Finding(
        "signal-explosion", sev,
        f"at initialisation the forward signal's scale grows by {std_orders:.1f} orders of "
        f"magnitude over {len(p.layers)} layers",
        layers=p.layers[len(p.layers) // 2:], evidence=evidence,
        remedies=["he-init", "lsuv-init", "batchnorm", "layernorm"], step=0, reference=REF_SIGNAL)]


def through_time(p: ProbeResult, m: ModelMap, recurrent: str | None = "vanilla") -> list[Finding]:
    """Vanishing/exploding gradient through time, from ||dL/dx_t|| for each step t.

    ``recurrent``: "vanilla" (judged), "gated" (LSTM/GRU: exempt, see module docs) or
    None (no recurrence, e.g. attention: every step is one hop from the output, so an
    uneven profile says which steps the loss reads, not that a signal decays).
    Trailing steps with exactly zero gradient (the loss does not read them, as the
    last position of a causal LM loss) are left out.
    """
    g = p.time_grad
    if recurrent != "vanilla" or not g:
        return []
    g = list(g)
    while g and g[-1] == 0.0:
        g.pop()
    if len(g) < MIN_STEPS:
        return []
    k = max(2, len(g) // 10)
    first, last = _upper_median(g[:k]), _upper_median(g[-k:])
    if not math.isfinite(first) or not math.isfinite(last):
        orders, sev = -math.inf, "error"
    else:
        orders = log10(last) - log10(first)  # > 0: earlier steps get less gradient
        sev = _severity(orders)
    if sev is None:
        return []
    rnn = [x.name for x in m.layers if x.kind in ("rnn", "attention")] or p.layers[:1]
    evidence = {"orders_over_time": round(abs(orders), 2), "steps": len(g),
                "orders_per_step": round(orders / (len(g) - k), 4) if math.isfinite(orders) else orders,
                "time_grad_log10": _profile(g)}
    if orders > 0:
        return [Finding(
            "vanishing-gradient", sev,
            f"through time: dL/dx_t at the first steps is {orders:.1f} orders of magnitude below "
            f"the last steps' over {len(g)} steps",
            layers=rnn, evidence=evidence, remedies=["lstm", "orthogonal-init", "clip-norm"],
            step=0, reference="Hochreiter 1991; Bengio, Simard & Frasconi 1994; Hochreiter & Schmidhuber 1997")]
    return [Finding(
        "exploding-gradient", sev,
        f"through time: dL/dx_t grows by {abs(orders):.1f} orders of magnitude from the last steps "
        f"to the first over {len(g)} steps",
        layers=rnn, evidence=evidence, remedies=["clip-norm", "orthogonal-init", "lstm"],
        step=0, reference=REF_EXPLODING)]


def _upper_median(v: Sequence[float]) -> float:
    s = sorted(v)
    return s[len(s) // 2]


def probe_findings(p: ProbeResult, m: ModelMap, recurrent: str | None = None) -> list[Finding]:
    """Every probe rule: gradient flow along depth and through time, signal propagation, layers no
    output reaches (``no-gradient``).

    Args:
        p: the init probe's measurements.
        m: the model map the probe ran on.
        recurrent: the model's recurrence (``recurrence.recurrence``: "vanilla", "gated", None).

    Returns:
        The findings, ``step=0``.
    """
    found = gradient_flow(p, m) + through_time(p, m, recurrent) + signal_propagation(p, m) + no_gradient(p, m)
    if any(x.kind == "norm" for x in m.layers):  # a normalised model (a LayerNorm Transformer, a BN
        norms = ("batchnorm", "layernorm")  # ResNet): inserting more norm layers is no remedy
        found = [replace(f, remedies=[r for r in f.remedies if r not in norms]) for f in found]
    return found


__all__ = ["ERROR_ORDERS", "MIN_STEPS", "WARN_ORDERS", "depth_trend", "grad_logs", "gradient_flow",
           "probe_findings", "role", "signal_propagation", "through_time", "trend_of_logs", "underflow_log10",
           "zero_gradient_layers"]
