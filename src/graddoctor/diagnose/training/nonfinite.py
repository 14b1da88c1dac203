"""The non-finite rule: NaN/Inf in the loss, the gradients or the activations.

Steps an AMP ``GradScaler`` skipped (``skipped: true``) are the scaler doing its
job and are not counted; but when it skips ``MAX_SKIPPED_RUN`` steps in a row
the gradients are non-finite at every scale, which is reported.

A non-finite loss on one step only, with finite gradients and finite losses after it, is a
**warning**: the NaN never reached the weights (a bad batch the user's loop skipped: its loss
still reaches ``w.step``), and the run went on. The activations sampled on that step may be
non-finite too (the sampled forward was that batch's: a NaN in the input); on finite weights
the step's gradients would be finite. Anything more (non-finite gradients, non-finite
activations without a non-finite loss, two such steps, or the last loss non-finite) is an error,
except a loss that is non-finite on every step while every gradient is finite: that is not the
loss the gradients come from (``w.step`` was given another tensor), a warning.

Example:
    >>> steps = [{"step": 0, "loss": 1.0}, {"step": 1, "loss": float("nan")}]
    >>> [(f.code, f.severity, f.step) for f in non_finite({"layers": []}, steps)]
    [('non-finite', 'error', 1)]
    >>> [f.severity for f in non_finite({"layers": []}, steps + [{"step": 2, "loss": 0.9}])]
    ['warning']
"""

from __future__ import annotations

import math

from graddoctor.diagnose.training.series import as_float
from graddoctor.report import Finding

#: steps, every one with a non-finite loss and finite gradients, that read as a loss passed to
#: ``w.step`` that is not the one the gradients come from (a warning, not a blow-up)
MIN_LOSS_ONLY = 5
#: consecutive AMP-skipped steps after which skipping is itself a finding (a fresh
#: GradScaler halves its scale per skip: 25 skips take 65536 down below 0.01)
MAX_SKIPPED_RUN = 25

REF = (
    "Micikevicius et al. 2018 (Mixed Precision Training, ICLR, sec. 3.2: loss scaling); "
    "Pascanu, Mikolov & Bengio 2013 (ICML, sec. 3.2)"
)


def _bad(x: object) -> bool:
    v = as_float(x)
    return x is not None and not math.isfinite(v)


def _step_problems(s: dict) -> tuple[bool, dict[str, int], list[str]]:
    """(loss non-finite, {layer: non-finite grad count}, activation sites with non-finite stats)."""
    counts = {k: int(c) for k, c in (s.get("nonfinite") or {}).items() if c}
    acts = [site for site, st in (s.get("act") or {}).items()
            if any(_bad(st.get(k)) for k in ("mean", "std"))]
    return _bad(s.get("loss")), counts, acts


def non_finite(meta: dict, steps: list[dict]) -> list[Finding]:
    """NaN/Inf in loss, gradients or activations on a step the optimizer took.

    Example:
        >>> non_finite({"layers": []}, [{"step": 0, "loss": 1.0, "skipped": True, "nonfinite": {"0": 3}}])
        []
    """
    order = {ly["name"]: i for i, ly in enumerate(meta.get("layers", []))}
    first = None
    n_bad = n_loss_only = 0
    last_bad = False  # the last step the optimizer took had a non-finite loss
    run = best_run = 0
    run_start = None
    for s in steps:
        if s.get("skipped", False):
            run += 1
            if run == 1:
                run_start = s.get("step")
            best_run = max(best_run, run)
            continue
        run = 0
        loss_bad, counts, acts = _step_problems(s)
        last_bad = loss_bad
        if loss_bad or counts or acts:
            n_bad += 1
            n_loss_only += loss_bad and not counts and not acts
            if first is None:
                first = (s, loss_bad, counts, acts)
    out = []
    if first is not None:
        s, loss_bad, counts, acts = first
        layers = sorted(counts, key=lambda n: order.get(n, len(order)))
        where = ([f"loss={s.get('loss')}"] if loss_bad else []) + \
            ([f"gradients of {len(counts)} layer(s)"] if counts else []) + \
            ([f"activations at {len(acts)} site(s)"] if acts else [])
        ev = {"first_step": s.get("step"), "steps_nonfinite": n_bad,
              "steps_used": sum(not x.get("skipped", False) for x in steps),
              "loss_nonfinite": loss_bad, "nonfinite_values": sum(counts.values()),
              "skipped_steps": sum(bool(x.get("skipped", False)) for x in steps)}
        # activations non-finite with the loss, on the one step: the same bad batch's forward
        lone = n_bad == 1 and not counts and (not acts or loss_bad) and not last_bad
        # the loss non-finite on every step, every gradient finite: it is not the loss the gradients
        # come from (``w.step`` was given another tensor), and the weights never saw a NaN
        if n_loss_only == ev["steps_used"] >= MIN_LOSS_ONLY:
            msg = (f"the loss given to w.step() was non-finite on all {n_bad} steps while every gradient was "
                   "finite: it is not the loss the gradients come from - pass the tensor you call backward() on")
            return [Finding("non-finite", "warning", msg, [], {**ev, "loss_only": True}, [], s.get("step"), REF)]
        msg = f"non-finite values in {', '.join(where)} at step {s.get('step')}"
        if lone:
            msg += (" only: the gradients were finite and the loss after it too (a bad batch the "
                    "loop skipped?); the weights never saw it: check that batch's data")
        # a lone bad batch is a data problem: a lower rate or clipping would not have prevented it
        out.append(Finding("non-finite", "warning" if lone else "error", msg, layers + acts, ev,
                           [] if lone else ["lower-lr", "clip-norm"], s.get("step"), REF))
    elif best_run >= MAX_SKIPPED_RUN:
        ev = {"consecutive_skipped_steps": best_run, "threshold": MAX_SKIPPED_RUN}
        out.append(Finding("non-finite", "error",
                           f"the AMP scaler skipped {best_run} steps in a row: gradients are "
                           "non-finite at every loss scale", [], ev, ["lower-lr", "clip-norm"],
                           run_start, REF))
    return out
