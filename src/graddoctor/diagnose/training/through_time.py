"""Vanishing through time, inferred: a vanilla RNN whose loss plateaus early.

Per-layer norms cannot resolve time steps, so this is the textbook reading of the
symptom (Bengio, Simard & Frasconi 1994, sec. IV; Hochreiter & Schmidhuber 1997,
sec. 5): a tanh/ReLU RNN stuck on a plateau lacks the long-range gradient.
``gd.check`` measures the through-time profile directly. It is the one training-time
rule built on another (``loss_plateau``): ``vanishing_gradient`` falls back on it when
the across-layer profile shows nothing.

Example:
    >>> meta = {"layers": [{"name": "rnn", "kind": "rnn", "type": "RNN"}]}
    >>> steps = [{"step": t, "loss": 2.3} for t in range(1, 61)]
    >>> [(f.code, f.layers) for f in vanishing_through_time(meta, steps)]
    [('vanishing-gradient', ['rnn'])]
"""

from __future__ import annotations

from graddoctor.diagnose.thresholds import REF_VANISH
from graddoctor.diagnose.training.loss import loss_plateau
from graddoctor.diagnose.training.sites import vanilla_rnns
from graddoctor.report import Finding


def vanishing_through_time(meta: dict, steps: list[dict]) -> list[Finding]:
    """A ``vanishing-gradient`` warning on the vanilla RNN layers when the loss plateaus early.

    Example:
        >>> vanishing_through_time({"layers": []}, [])
        []
    """
    rnns = vanilla_rnns(meta)
    if not rnns:
        return []
    plateau = loss_plateau(meta, steps)
    if not plateau:
        return []
    p = plateau[0]
    ev = {"inferred_from": "loss-plateau", "recurrent_type": "vanilla RNN", **{
        k: p.evidence[k] for k in ("loss_start", "loss_level", "level_over_start")}}
    msg = ("likely vanishing through time: a vanilla RNN whose loss plateaus early (per-layer "
           "norms cannot see time steps; gd.check measures the through-time profile)")
    return [Finding("vanishing-gradient", "warning", msg, rnns, ev,
                    ["lstm", "orthogonal-init", "clip-norm"], p.step, REF_VANISH)]


__all__ = ["vanishing_through_time"]
