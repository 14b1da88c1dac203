"""Autofix's judgements over the loss records: is the run slow, did a fix help, did it regress.

Pure functions over watch's step records (``{"step", "loss", ...}``):

- ``level(window)``: the median of the last ``LEVEL`` finite losses (inf when none is finite);
- ``learning(window)``: the level is below ``LEARN_FRAC`` of the start, with enough losses to
  tell (the rollback point moves forward then). 0.8: a plain 10-layer CNN that later blew up
  had reached 0.74-0.76 of its start; a stuck post-LN net that fell to the class prior in its
  first 20 steps sits at 0.89 of its start (nn.TransformerEncoder d=64, 2.64 -> 2.34) and
  must keep its attach-time point for the warm-up restart;
- ``slow(window)``: the level is still above ``SLOW_FRAC`` of the start (median of the first
  ``START`` losses): the run has learnt little. Calibrated on the autofix benchmark's seed 0:
  the slow faults (75-90% dead ReLUs, tanh with a large init) sit at 0.70-0.93 of their start
  after 40 steps; healthy runs of both suites are far below (the tuned references reach <= 0.5);
- ``helped(before, after)``: the level at the end of a fix's trial window is finite and below
  ``HELP_FRAC`` x the level before it. ``HELP_FRAC`` is 1: a fix is undone only when the run is
  no better than before it (calibrated on seed 0: with 0.95 and a 40-step trial, five fixes of
  stuck runs that re-draw the weights were undone at 2.209-2.595 vs 2.30 before, and the same
  fixes, kept, reach the reference; the trial is now 80 steps);
- ``no_worse(before, after)``: within ``TIE_FRAC`` (1%) of the level before: a fix whose
  causes are gone from its trial window is kept on a tie (the watcher applies that rule);
- ``strong(finding)``: a ``dead-relu`` / ``saturated-activation`` warning whose worst site is
  past ``STRONG`` (the slow-cause trigger reads no other warning). Calibrated on seed 0: the
  slow faults' worst sites are 75-83% dead or 45-59% saturated (taking 0.5: 3 of 4 faults);
  the healthy 20-layer ReLU+He MLP's one dead site is 56% dead. A dead-ReLU warning with
  *every* watched site (3 or more) at least ``STRONG_EVERY`` (60%) dead counts too;
- ``regressed(levels)``: after a fix that helped, the level gave back more than ``REGRESS_FRAC``
  of what it had gained (first level -> best since the fix) at the last two checks: the repaired
  net is unstable at the user's rate (a noisy low loss that wobbles by a few hundredths is not).
  The watcher's first level is the one before the fix: measured from the end of the trial
  instead, a 7-layer MLP at 0.07 whose loss wobbled to 0.069 from its best 0.047 had its rate
  cut (warm restarts, and a constant rate too).

Example:
    >>> win = [{"step": t, "loss": 2.3 - 0.001 * t} for t in range(1, 41)]
    >>> slow(win), round(level(win), 3)
    (True, 2.264)
    >>> helped(2.3, 2.25), helped(2.3, 2.31), helped(float("nan"), 1.0)
    (True, False, True)
    >>> regressed([2.0, 1.2, 1.7, 1.8]), regressed([2.0, 1.2, 1.25, 1.8]), regressed([1.4, 0.2, 0.3, 0.3])
    (True, False, False)
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.training.gradients import RULE_OF_THUMB_ORDERS
from graddoctor.diagnose.training.series import as_float
from graddoctor.report import Finding

#: losses in the level and the start
LEVEL, START = 10, 5
#: a window whose level is above this fraction of its start has learnt little
SLOW_FRAC = 0.6
#: a window whose level is below this fraction of its start is learning (a rollback point)
LEARN_FRAC = 0.8
#: warning code -> (evidence key, the worst site's value from which a slow cause counts)
STRONG = {"dead-relu": ("max_dead_frac", 0.7), "saturated-activation": ("max_sat_frac", 0.5)}
#: warning code -> the value from which a slow cause counts when *every* watched site is past it
#: (mlp5-relu-60pct-dead-sgd: all 4 sites 61-69% dead, worst under 0.7; the healthy 20-layer
#: ReLU+He MLP has one dead site of 19)
STRONG_EVERY = {"dead-relu": 0.6}
EVERY_MIN_SITES = 3
#: a fix helped when its level is at most this fraction of the level before it
HELP_FRAC = 1.0
#: a level within this factor of the level before a fix is a tie (a fix whose causes are gone
#: is then kept: mlp20-sigmoid-adam seed 2, relu + He + rezero at step 10, stuck at 2.30 like the
#: sigmoid net it replaced, was undone back to the net that never learns)
TIE_FRAC = 1.01
#: this fraction of the gain since the fix given back, at two checks in a row: regressed
REGRESS_FRAC = 0.5
#: a fix on trial whose causes are gone and whose loss fell below this fraction of its level
#: right after the fix is judged again one trial window later (``falling``; then again while each
#: window lowers the loss below this fraction of the last), not undone: a sigmoid MLP repaired
#: at a rate of 1e-4 (relu + He + rezero at step 10) went 2.49 -> 2.42 in 80 steps (0.97), 2.30 by
#: 160 and 2.18 by 250, while its broken twin sat at 2.33; it was undone at step 90. Any fall past
#: noise counts: the cost of a wrong call is one more window before the undo
FALLING_FRAC = 0.99
#: ... and whose level is at most this factor above the level before the fix (a re-drawn net that
#: relearns from scratch falls too, far above a trained level: a checkpoint at 0.33 re-drawn to 2.3)
NEAR_FRAC = 1.1
#: the most records a check reads (``thinned``)
CHECK_ROWS = 1000


def _losses(window: list[dict]) -> list[float]:
    vals = [as_float(s.get("loss")) for s in window if "loss" in s]
    return [v for v in vals if math.isfinite(v)]


def thinned(window: list[dict]) -> list[dict]:
    """``window`` with at most ``CHECK_ROWS`` records: its first ``CHECK_ROWS // 5`` (the start
    the rules compare with), its last ``2 * CHECK_ROWS // 5`` (the run now) and evenly spaced
    ones between (a check of a long run reads a bounded number of records).

    Example:
        >>> win = [{"step": t} for t in range(1, 5001)]
        >>> out = thinned(win); len(out), out[0]["step"], out[-1]["step"]
        (1000, 1, 5000)
        >>> thinned(win[:900]) == win[:900]
        True
    """
    if len(window) <= CHECK_ROWS:
        return window
    head, tail = CHECK_ROWS // 5, 2 * CHECK_ROWS // 5
    middle = window[head:-tail]
    picks = np.linspace(0, len(middle) - 1, CHECK_ROWS - head - tail).round().astype(int)
    return window[:head] + [middle[i] for i in picks] + window[-tail:]


def first_loss(window: list[dict]) -> float:
    """The first finite loss of ``window`` (nan when none): at the first step, the loss of the
    weights as they were at attach.

    Example:
        >>> first_loss([{"step": 1}, {"step": 2, "loss": 4.5}, {"step": 3, "loss": 4.0}])
        4.5
    """
    return next(iter(_losses(window)), math.nan)


def _start_and_level(window: list[dict]) -> tuple[float, float]:
    """(median of the first ``START``, median of the last ``LEVEL``) finite losses of ``window``;
    (0, 0) when it has fewer than ``START + LEVEL`` (no judgement: every caller needs start > 0)."""
    loss = _losses(window)
    if len(loss) < START + LEVEL:
        return 0.0, 0.0
    return float(np.median(loss[:START])), float(np.median(loss[-LEVEL:]))


def level(window: list[dict], n: int = LEVEL) -> float:
    """Median of the last ``n`` finite losses of ``window`` (inf when none is finite); a small
    ``n`` reads the loss now, with less lag.

    Example:
        >>> round(level([{"step": t, "loss": 2.3 - 0.2 * t} for t in range(1, 11)], 3), 6)
        0.5
    """
    loss = _losses(window)
    return float(np.median(loss[-n:])) if loss else math.inf


def falling(window: list[dict]) -> bool:
    """Enough losses to judge, and the level below ``FALLING_FRAC`` of the start: the loss is
    going down, however slowly.

    Example:
        >>> falling([{"step": t, "loss": 2.5 - 0.001 * t} for t in range(1, 81)])
        True
    """
    start, now = _start_and_level(window)
    return start > 0 and now < FALLING_FRAC * start


def slow(window: list[dict]) -> bool:
    """The level is above ``SLOW_FRAC`` of the start (the run has learnt little so far)."""
    start, now = _start_and_level(window)
    return start > 0 and now >= SLOW_FRAC * start


def learning(window: list[dict]) -> bool:
    """Enough losses to judge, and the level below ``LEARN_FRAC`` of the start: the run is
    learning (its weights are a good rollback point).

    Example:
        >>> learning([{"step": t, "loss": 2.3 * 0.95 ** t} for t in range(1, 31)])
        True
    """
    start, now = _start_and_level(window)
    return start > 0 and now < LEARN_FRAC * start


def doubtful(finding: Finding) -> bool:
    """A ``vanishing-gradient`` finding under the rule of thumb's 3 orders with no exactly-zero
    layer: an error only because the loss is flat (the severity policy), not one autofix
    re-draws a net for. A healthy RoBERTa classifier on its usual ~60-step plateau read 2.05
    orders (its head against its body, on 2% of the steps) and had all 14 Linear layers re-drawn:
    0.998 -> 0.914 accuracy. The autofix benchmark's vanishing causes read 3 orders and more,
    or follow a blow-up fix (the watcher lets a weak one count then: mlp4-leaky-lr-huge).

    Example:
        >>> doubtful(Finding("vanishing-gradient", "error", "v", [], {"drop_orders": 2.05}))
        True
        >>> doubtful(Finding("vanishing-gradient", "error", "v", [], {"drop_orders": 5.9}))
        False
    """
    ev = finding.evidence
    drop = ev.get("drop_orders")
    return (finding.code == "vanishing-gradient" and isinstance(drop, (int, float))
            and drop < RULE_OF_THUMB_ORDERS[0] and not ev.get("zero_gradient_layers"))


def strong(finding: Finding) -> bool:
    """A slow-cause warning past its ``STRONG`` threshold, or over ``STRONG_EVERY`` at every
    watched site of a net with at least ``EVERY_MIN_SITES`` of them.

    Example:
        >>> strong(Finding("dead-relu", "warning", "d", ["1"], {"max_dead_frac": 0.8}))
        True
        >>> strong(Finding("dead-relu", "warning", "d", ["1"], {"max_dead_frac": 0.56}))
        False
        >>> every = {"max_dead_frac": 0.69, "min_dead_frac": 0.61, "sites": 4, "sites_watched": 4}
        >>> strong(Finding("dead-relu", "warning", "d", ["1"], every))
        True
    """
    key, at = STRONG.get(finding.code, ("", math.inf))
    ev = finding.evidence
    value = ev.get(key)
    if isinstance(value, (int, float)) and value >= at:
        return True
    low, sites, watched = ev.get(key.replace("max_", "min_")), ev.get("sites"), ev.get("sites_watched")
    return (finding.code in STRONG_EVERY and isinstance(low, (int, float)) and low >= STRONG_EVERY[finding.code]
            and isinstance(watched, int) and watched >= EVERY_MIN_SITES and sites == watched)


def helped(before: float, after: float) -> bool:
    """``after`` is finite and below ``HELP_FRAC`` x ``before`` (any finite level beats a
    non-finite one)."""
    if not math.isfinite(after):
        return False
    return not math.isfinite(before) or after < HELP_FRAC * before


def no_worse(before: float, after: float) -> bool:
    """``after`` is finite and at most ``TIE_FRAC`` x ``before`` (a tie between two stuck runs).

    Example:
        >>> no_worse(2.302, 2.305), no_worse(2.3, 2.5), no_worse(2.3, float("nan"))
        (True, False, False)
    """
    return math.isfinite(after) and (not math.isfinite(before) or after <= TIE_FRAC * before)


def regressed(levels: list[float]) -> bool:
    """The last two of ``levels`` (one per check since a fix) gave back more than ``REGRESS_FRAC``
    of the gain from the first level to the best before them."""
    if len(levels) < 3:
        return False
    first, best = levels[0], min(levels[:-2])
    if not (math.isfinite(first) and math.isfinite(best)) or first <= best:
        return False
    return all(v > best + REGRESS_FRAC * (first - best) for v in levels[-2:])


__all__ = ["CHECK_ROWS", "EVERY_MIN_SITES", "FALLING_FRAC", "HELP_FRAC", "LEARN_FRAC", "LEVEL", "NEAR_FRAC", "REGRESS_FRAC", "SLOW_FRAC", "START", "STRONG", "STRONG_EVERY",
           "TIE_FRAC", "doubtful", "falling", "first_loss", "helped", "learning", "level", "no_worse", "regressed", "slow", "strong", "thinned"]
