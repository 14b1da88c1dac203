"""``vanishing-gradient`` / ``exploding-gradient`` along the calls of a module applied several times
per forward (weights shared along depth: a block looped over, a cell stepped in Python).

The probe sums a module's gradient over all its calls, so a reused block's total is its
output-side calls' and looks healthy while its first calls get none: a sigmoid ``Linear`` looped
12 times read 4.8e-11 at its first call against 7e-2 at its last, and check said nothing while the
run sat at chance (held-out trial, 2026-12-02). The probe now keeps each call's gradient
(``ProbeResult.calls_log10``, 3+ calls, in call order); this rule reads the first call against the
last with ``gradient_flow``'s thresholds, when that rule found nothing along depth. Gated cells
(LSTM/GRU) are exempt, as through time.

Example:
    >>> from graddoctor.measure.probe import ProbeResult
    >>> p = ProbeResult(calls_log10={"block": [-11.0, -8.0, -5.0, -1.0]})
    >>> [(f.code, f.severity, f.layers) for f in reused_flow(p, [], set())]
    [('vanishing-gradient', 'error', ['block'])]
"""

from __future__ import annotations

import math

from graddoctor.diagnose.checktime.probe_rules import ERROR_ORDERS, WARN_ORDERS
from graddoctor.measure.probe import ProbeResult
from graddoctor.report import Finding

_FLOW = {"vanishing-gradient", "exploding-gradient"}


def reused_flow(p: ProbeResult, found: list[Finding], gated: set[str], cells: frozenset = frozenset()) -> list[Finding]:
    """The finding for the reused module whose first call's gradient is farthest from its last.

    Args:
        p: the init probe's measurements.
        found: the findings so far (a gradient-flow finding along depth: nothing more is said).
        gated: names of gated recurrent cells (LSTMCell/GRUCell: their gates keep the gradient).
        cells: names of vanilla ``nn.RNNCell`` modules (stepped in Python: the LSTM remedies).
    """
    if any(f.code in _FLOW for f in found):
        return []
    worst = None
    for name, logs in p.calls_log10.items():
        if name in gated or not logs or not math.isfinite(logs[-1]):
            continue
        first = logs[0]
        orders = math.inf if first == -math.inf else logs[-1] - first  # > 0: earlier calls get less
        if not math.isnan(orders) and abs(orders) >= WARN_ORDERS and (worst is None or abs(orders) > abs(worst[1])):
            worst = (name, orders, logs)
    if worst is None:
        return []
    name, orders, logs = worst
    sev = "error" if abs(orders) >= ERROR_ORDERS else "warning"
    evidence = {"calls": len(logs), "orders_over_calls": round(abs(orders), 2) if math.isfinite(orders) else orders,
                "call_grad_log10": [round(v, 2) if math.isfinite(v) else v for v in logs]}
    if orders > 0:
        return [Finding(
            "vanishing-gradient", sev,
            f"at initialisation the gradient at the first of {len(logs)} calls of {name!r} (one module applied "
            f"{len(logs)} times per forward) is {orders:.1f} orders of magnitude below its last call's"
            if math.isfinite(orders) else
            f"at initialisation no gradient reaches the first of {len(logs)} calls of {name!r} (one module "
            f"applied {len(logs)} times per forward)",
            layers=[name], evidence=evidence, step=0,
            remedies=["lstm", "orthogonal-init", "clip-norm"] if name in cells else ["relu", "he-init", "residual", "layernorm"],
            reference="Hochreiter 1991; Bengio, Simard & Frasconi 1994 (a shared block is a recurrence)")]
    return [Finding(
        "exploding-gradient", sev,
        f"at initialisation the gradient at the first of {len(logs)} calls of {name!r} (one module applied "
        f"{len(logs)} times per forward) is {abs(orders):.1f} orders of magnitude above its last call's",
        layers=[name], evidence=evidence, remedies=["he-init", "clip-norm", "layernorm"], step=0,
        reference="Pascanu, Mikolov & Bengio 2013")]


__all__ = ["reused_flow"]
