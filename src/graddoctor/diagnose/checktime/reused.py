"""``vanishing-gradient`` / ``exploding-gradient`` along the calls of a module applied several times
per forward (weights shared along depth: a block looped over, a cell stepped in Python).

The probe sums a module's gradient over all its calls, so a reused block's total is its
output-side calls' and looks healthy while its first calls get none: a sigmoid ``Linear`` looped
12 times read 4.8e-11 at its first call against 7e-2 at its last, and check said nothing while the
run sat at chance (held-out trial, 2026-12-02). The probe now keeps each call's gradient
(``ProbeResult.calls_log10``, 3+ calls, in call order); this rule reads the first call against the
last with ``gradient_flow``'s thresholds, when that rule found nothing along depth, and (with the
map) only when a layer called once before the loop is starved too: a DEQ that injects its input at
every call, or a loop on the raw input, starves nothing (a contractive fixed-point loop trained to
0.869 while its first call read 17 orders low). Gated cells (LSTM/GRU) are exempt, as through time,
and so is a model that steps one in Python (a per-step input projection decays with its memory).

Example:
    >>> from graddoctor.measure.probe import ProbeResult
    >>> p = ProbeResult(calls_log10={"block": [-11.0, -8.0, -5.0, -1.0]})
    >>> [(f.code, f.severity, f.layers) for f in reused_flow(p, [], set())]  # (no map: no starved check)
    [('vanishing-gradient', 'error', ['block'])]
"""

from __future__ import annotations

import math

from graddoctor.diagnose.checktime.probe_rules import ERROR_ORDERS, WARN_ORDERS
from graddoctor.measure.probe import ProbeResult
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

_FLOW = {"vanishing-gradient", "exploding-gradient"}


def reused_flow(p: ProbeResult, found: list[Finding], gated: set[str], cells: frozenset = frozenset(),
                m: ModelMap | None = None) -> list[Finding]:
    """The finding for the reused module whose first call's gradient is farthest from its last.

    Args:
        p: the init probe's measurements.
        found: the findings so far (a gradient-flow finding along depth: nothing more is said).
        gated: names of gated recurrent cells (LSTMCell/GRUCell: their gates keep the gradient).
        cells: names of vanilla ``nn.RNNCell`` modules (stepped in Python: the LSTM remedies).
        m: the model map; with it, a vanishing call profile counts only when a layer called once
            before the loop is starved too (see ``_starved``).
    """
    if any(f.code in _FLOW for f in found) or any(n in p.calls_log10 for n in gated):
        return []  # a gated cell stepped in Python: the per-step layers' decay is its memory's
    worst = None
    for name, logs in p.calls_log10.items():
        if not logs or not math.isfinite(logs[-1]):
            continue
        first = logs[0]
        orders = math.inf if first == -math.inf else logs[-1] - first  # > 0: earlier calls get less
        if not math.isnan(orders) and abs(orders) >= WARN_ORDERS and (worst is None or abs(orders) > abs(worst[1])):
            worst = (name, orders, logs)
    if worst is None:
        return []
    name, orders, logs = worst
    starved = _starved(p, m, name, logs[-1]) if m is not None and orders > 0 else []
    if m is not None and orders > 0 and not starved and name not in cells:
        return []  # the input reaches every call (a DEQ's injection, a loop on the raw input): no layer starves
    sev = "error" if abs(orders) >= ERROR_ORDERS else "warning"
    evidence = {"calls": len(logs), "orders_over_calls": round(abs(orders), 2) if math.isfinite(orders) else orders,
                "call_grad_log10": [round(v, 2) if math.isfinite(v) else v for v in logs],
                **({"starved_layers": starved} if starved else {})}
    if orders > 0:
        return [Finding(
            "vanishing-gradient", sev,
            (f"at initialisation the gradient at the first of {len(logs)} calls of {name!r} (one module applied "
             f"{len(logs)} times per forward) is {orders:.1f} orders of magnitude below its last call's"
             if math.isfinite(orders) else
             f"at initialisation no gradient reaches the first of {len(logs)} calls of {name!r} (one module "
             f"applied {len(logs)} times per forward)")
            + (f", and the layers before it get as little ({', '.join(starved[:3])})" if starved else ""),
            layers=[name, *starved], evidence=evidence, step=0,
            remedies=["lstm", "orthogonal-init", "clip-norm"] if name in cells else ["relu", "he-init", "residual", "layernorm"],
            reference="Hochreiter 1991; Bengio, Simard & Frasconi 1994 (a shared block is a recurrence)")]
    return [Finding(
        "exploding-gradient", sev,
        f"at initialisation the gradient at the first of {len(logs)} calls of {name!r} (one module applied "
        f"{len(logs)} times per forward) is {abs(orders):.1f} orders of magnitude above its last call's",
        layers=[name], evidence=evidence, remedies=["he-init", "clip-norm", "layernorm"], step=0,
        reference="Pascanu, Mikolov & Bengio 2013")]


def _starved(p: ProbeResult, m: ModelMap, name: str, last: float) -> list[str]:
    """The layers called once before ``name``'s first call whose gradient is ``WARN_ORDERS`` or more
    below its last call's: the vanishing reaches what feeds the loop (a DEQ injects its input at
    every call, so what feeds it gets the last call's gradient too, and nothing starves)."""
    try:
        start = m.layer(name).min_depth
    except KeyError:
        return []
    logs = dict(zip(p.layers, p.grad_log10))
    out = []
    for n, v in logs.items():
        if n in p.calls_log10 or not v < math.inf:
            continue
        try:
            before = m.layer(n).depth < start
        except KeyError:
            continue
        if before and v <= last - WARN_ORDERS:
            out.append(n)
    return out


__all__ = ["reused_flow"]
