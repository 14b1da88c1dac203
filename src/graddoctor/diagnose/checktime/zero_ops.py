"""A zero-derivative op in the forward (``torch.round``, ``torch.sign``, ``floor``, ``ceil``, ``trunc``)
passes no gradient: the layers before it get exact zeros and never train.

The init probe reads those zeros as a gradient that vanished on the input side, and check said
``vanishing-gradient`` with init, BatchNorm and residual remedies, none of which helps (held-out
trial, 2026-12-02: a ``torch.round`` quantiser between two Linear layers). The probe lists the
zero-derivative nodes of the loss's autograd graph (``zero_derivative_ops``); where a vanishing
gradient of exact zeros meets one, it is reported as ``no-gradient`` naming the op and the fix (a
straight-through estimator: ``x + (torch.round(x) - x).detach()``), with the same layers.

Example:
    >>> f = Finding("vanishing-gradient", "error", "m", ["enc"], {"zero_gradient_input_side": 1})
    >>> [(g.code, g.layers) for g in zero_derivative_cut([f], ["round"])]
    [('no-gradient', ['enc'])]
"""

from __future__ import annotations

from dataclasses import replace

from graddoctor.report import Finding


def zero_derivative_cut(findings: list[Finding], ops: list[str]) -> list[Finding]:
    """``findings`` with a vanishing gradient of exact zeros re-read as ``no-gradient`` at ``ops``."""
    if not ops:
        return findings
    calls = ", ".join(f"torch.{op}" for op in ops)
    out = []
    for f in findings:
        if f.code == "vanishing-gradient" and f.evidence.get("zero_gradient_input_side"):
            f = replace(f, code="no-gradient", remedies=[], evidence={**f.evidence, "zero_derivative_ops": ops},
                        message=f"no gradient passes {calls} in the forward (its derivative is zero everywhere): "
                                f"{f.evidence['zero_gradient_input_side']} layer(s) before it get exactly zero gradient "
                                "and never train - use a straight-through estimator, e.g. "
                                f"x + (torch.{ops[0]}(x) - x).detach()",
                        reference="Bengio, Leonard & Courville 2013 (straight-through estimator)")
        out.append(f)
    return out


__all__ = ["zero_derivative_cut"]
