"""Static predictions checked against the init probe's measurement.

``poor-init``'s chain rule predicts, from the weight scales alone, how many orders of magnitude
the backward gradient changes over a run of plain layers. It cannot see what the map does not
record: a scalar in front of an activation (SIREN's ``sin(30 * Wx)``), an activation it does not
know (``torch.sin``), a self-normalising fixed point. Where the probe ran, the prediction is
checked against the gradient it measured at the chain's first and last layer: a chain finding
whose measured change is under ``MEASURED_SHARE`` of the predicted one (over the same number of
layers) is dropped. Measured (``tests/test_check_measured.py``): PyTorch's default init in a 4- and
5-layer ReLU MLP, a 6-layer tanh and an 8-layer sigmoid MLP measures 97%, 97%, 109% and 355% of
its prediction (kept); SIREN with its prescribed init measures 0% of a predicted 9.3 orders
(dropped); so did 8- and 32-layer SELU nets with LeCun init (9-11%) before SELU got its own band.

Example:
    >>> from graddoctor.report import Finding
    >>> f = Finding("poor-init", "warning", "m", ["a", "c"], {"chain_orders": -3.0, "chain_layers": 3})
    >>> probe = {"layers": ["a", "b", "c"], "grad_log10": [-4.0, -4.0, -4.0]}
    >>> contradicted(f, probe)
    True
"""

from __future__ import annotations

from typing import Any

from graddoctor.report import Finding

#: a chain prediction is kept when the probe measures at least this share of it
MEASURED_SHARE = 0.33


def contradicted(f: Finding, probe: dict[str, Any]) -> bool:
    """True when ``f`` is a chain ``poor-init`` whose predicted gradient change the probe's
    ``grad_log10`` does not show (under ``MEASURED_SHARE`` of it, in its direction)."""
    claim, n = f.evidence.get("chain_orders"), f.evidence.get("chain_layers", 0)
    if f.code != "poor-init" or claim is None or n < 2 or not f.layers:
        return False
    logs = dict(zip(probe.get("layers", []), probe.get("grad_log10", [])))
    first, last = logs.get(f.layers[0]), logs.get(f.layers[-1])
    if first is None or last is None or not abs(first) < float("inf") or not abs(last) < float("inf"):
        return False
    measured = first - last  # negative: smaller toward the input side, as the claim's sign
    expected = claim * (n - 1) / n  # the probe reads n - 1 of the chain's n layers between them
    return measured / expected < MEASURED_SHARE


def drop_contradicted(findings: list[Finding], probe: dict[str, Any]) -> list[Finding]:
    """``findings`` without the static predictions the probe contradicts (``contradicted``)."""
    return [f for f in findings if not contradicted(f, probe)]


__all__ = ["MEASURED_SHARE", "contradicted", "drop_contradicted"]
