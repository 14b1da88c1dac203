"""The loss-plateau rule: the loss stops improving early in training.

At each step of the first ``EARLY_STEPS`` the last ``window`` losses get a
Theil-Sen slope (the median of pairwise slopes: mini-batch noise and spikes
cannot fake progress or its absence) and its standard error (from the median
absolute residual). The window is *flat* when the change it predicts over the
window is below ``max(MIN_REL_DROP, NOISE_SE x SE)`` either way (a loss that
swings back up is unstable, not stalled; a change within the noise is no
evidence of progress), and the loss is still above ``PROGRESS_FRAC`` of its
start (median of the first ``START_STEPS``): the net has learnt (almost) nothing.

How long the loss must stay flat depends on what the records say about *why*
it could not move (Saxe et al. 2014: a slow start is a saddle the net escapes
with healthy gradients; a net whose input side gets no gradient, or whose steps
are too small, has nothing to escape with). Three paths, the earliest call wins:

- ``fast`` (measured signs, ``cannot_learn``): relative gradients ``||g||/||w||``
  of the input-side third of the weight layers ``VANISH_ORDERS`` below (vanishing)
  or above (exploding: the chaotic regime, Poole et al. 2016, where the output
  forgets the input) the output side, 3 steps in a row; or the latest sampled
  update ratios ``||dw||/||w||`` ``STALL_ORDERS`` lower on the input side, or
  below ``TINY_STEP`` on every layer (20 steps move the weights < 0.2%).
  ``FAST_PERSIST`` flat windows of ``FAST_WINDOW`` steps: called at step >= 17.
  Healthy runs never show these signs (update ratios ~1e-3..1e-2 on every layer,
  He/ResNet/pre-norm/LSTM profiles within one order), so a slow start is safe.
- ``mid`` (weak signs): most hidden sigmoid/tanh sites saturated (``SAT_FRAC``
  of outputs at the bounds: local gradient < 0.02, Glorot & Bengio 2010 sec. 3)
  or a gateless recurrent layer (gradients through time decay geometrically,
  Bengio et al. 1994 sec. IV), or an LSTM/GRU whose keep gate is closed (``sites.closed_gates``:
  the same decay through its state). ``MID_PERSIST`` windows of ``MID_WINDOW``: step >= 27.
- ``loss only`` (no sign): ``PERSIST`` windows of ``WINDOW`` steps: step >= 49.
  Healthy slow starts last up to ~45 steps (an LSTM at log(10) for 20-30 steps,
  a 3-layer sigmoid net within 5% of its start for 40), so a call on the loss
  alone waits for them; and it is dropped when the whole record read (up to
  ``EARLY_STEPS``) shows the loss still falling (``still_learning``): judged against
  what the run goes on to reach, not against one window.

Each flag reads only the records up to its step, so the reported step is the
one at which a live monitor would first call the plateau. Windows in which the
learning rate rises by over 10% (warm-up) are never flat: a flat loss there is
the schedule. A plateau the run has left by the last step read (its loss level now below
``PROGRESS_FRAC`` of the plateau's level) is not reported, whatever the path (measured from the
plateau, not from the start: a saturated net whose loss starts at 9 and wanders between 7 and
10 has not left anything). A tiny BERT whose loss sat
at log 2 for 20 steps (input side 2.3 orders below the output side), then fell to 0.07, was
called stuck (an error, and autofix re-drew its weights). Limitation, by design: a run that first drops below
``PROGRESS_FRAC`` of its start and then stalls is not flagged (it cannot be told
from convergence without knowing the attainable loss).

Example:
    >>> steps = [{"step": t, "loss": 2.3} for t in range(1, 61)]
    >>> [f.code for f in loss_plateau({"layers": []}, steps)]
    ['loss-plateau']
"""

from __future__ import annotations

import math

import numpy as np

from graddoctor.diagnose.thresholds import MIN_LAYERS, SAT_FRAC, STALL_ORDERS, VANISH_ORDERS
from graddoctor.diagnose.training.series import (
    PROFILE_KINDS,
    UPDATE_FLOOR,
    ZERO_LOG,
    as_float,
    first_persistent,
    head_step,
    log10_safe,
    matrix,
    profile_layers,
    side_drop,
    side_drops,
    used_steps,
)
from graddoctor.diagnose.training.sites import (
    closed_gates,
    saturating_hidden_sites,
    short_memory,
    vanilla_rnns,
)
from graddoctor.report import Finding

#: generic path: window length and consecutive flat windows
WINDOW = 30
PERSIST = 20
#: fast path (measured signs that the net cannot learn): window length and flat windows
FAST_WINDOW = 15
FAST_PERSIST = 3
FAST_SIGNS = ("vanishing", "exploding", "stalled", "tiny-steps")
#: middle path (weak signs: saturated hidden layers, a vanilla RNN)
MID_WINDOW = 20
MID_PERSIST = 8
MID_SIGNS = FAST_SIGNS + ("saturated", "vanilla-rnn", "closed-gate")
#: a relative change below this over a window is flat whatever the noise
MIN_REL_DROP = 0.03
#: a change within this many standard errors of the slope is no evidence of progress
NOISE_SE = 2.0
#: the loss must still be above this fraction of its start
PROGRESS_FRAC = 0.85
#: losses (median) that define the start and the current level
START_STEPS = 5
LEVEL_STEPS = 10
#: only the first steps are searched (a plateau later on is convergence or a schedule)
EARLY_STEPS = 100
#: a gradient-profile sign must hold this many steps in a row (as vanishing-gradient's);
#: its thresholds (VANISH_ORDERS, STALL_ORDERS, MIN_LAYERS) are the gradient rules' own
#: (``graddoctor.diagnose.thresholds``)
EVIDENCE_PERSIST = 3
#: every layer's update ratio below this: the step is too small for the loss to move
TINY_STEP = 1e-4

#: path -> (window, flat windows in a row, signs that allow it; None: any)
PATHS = {"fast": (FAST_WINDOW, FAST_PERSIST, FAST_SIGNS),
         "mid": (MID_WINDOW, MID_PERSIST, MID_SIGNS),
         "loss only": (WINDOW, PERSIST, None)}

#: sign -> what it says, for the message
SIGN_TEXT = {
    "vanishing": "the input-side gradients vanish",
    "exploding": "the input-side gradients are orders above the output side (chaotic)",
    "stalled": "the input-side layers do not move",
    "tiny-steps": "every step is below 1e-4 of the weights",
    "saturated": "most hidden sigmoid/tanh units are saturated",
    "vanilla-rnn": "a vanilla RNN (gradients through time decay)",
    "closed-gate": "an LSTM/GRU whose forget/update gate is closed (memory ~1 step)",
}

#: sign -> remedies, best first (no sign: the step size is the first suspect)
REMEDIES = {
    None: ["lr-find", "batchnorm", "he-init"],
    "tiny-steps": ["lr-find"],
    "vanishing": ["batchnorm", "he-init", "residual"],
    "stalled": ["batchnorm", "he-init", "residual"],
    "exploding": ["xavier-init", "clip-norm", "lower-lr"],
    "saturated": ["batchnorm", "xavier-init", "lr-find"],
    "vanilla-rnn": ["lstm", "orthogonal-init", "clip-norm"],
    "closed-gate": ["orthogonal-init"],
}

REF = (
    "Saxe, McClelland & Ganguli 2014 (ICLR, sec. 2: plateaus of deep nets); "
    "Bengio, Simard & Frasconi 1994 (IEEE TNN 5(2), sec. IV: long-term dependencies); "
    "Poole et al. 2016 (NeurIPS, sec. 3: the chaotic regime)"
)


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if len(x) else math.nan


def theil_sen(y: np.ndarray) -> tuple[float, float]:
    """(slope, standard error) of ``y`` against its index; robust to outliers.

    Example:
        >>> theil_sen(np.array([3.0, 2.0, 1.0, 0.0]))
        (-1.0, 0.0)
    """
    n = len(y)
    i, j = np.triu_indices(n, 1)
    slope = float(np.median((y[j] - y[i]) / (j - i)))
    x = np.arange(n)
    res = y - slope * x
    sigma = 1.4826 * float(np.median(np.abs(res - np.median(res))))
    return slope, sigma / float(np.sqrt(((x - x.mean()) ** 2).sum()))


def _window_stats(loss: np.ndarray, window: int) -> tuple[np.ndarray, ...]:
    """For every window of ``window`` steps (one row each, in order): its median, its Theil-Sen
    slope and standard error (``theil_sen``, all rows at once) and the median of its last
    ``LEVEL_STEPS`` losses. The same numbers as window by window, one numpy call per statistic
    (autofix judges every 10 steps: per-window calls were most of its cost on small models).

    Example:
        >>> [float(v[0]) for v in _window_stats(np.array([3.0, 2.0, 1.0, 0.0]), 4)]
        [1.5, -1.0, 0.0, 1.5]
    """
    y = np.lib.stride_tricks.sliding_window_view(loss, window)
    i, j = np.triu_indices(window, 1)
    slope = np.median((y[:, j] - y[:, i]) / (j - i), axis=1)
    x = np.arange(window)
    res = y - slope[:, None] * x
    sigma = 1.4826 * np.median(np.abs(res - np.median(res, axis=1)[:, None]), axis=1)
    se = sigma / float(np.sqrt(((x - x.mean()) ** 2).sum()))
    return np.median(y, axis=1), slope, se, np.median(y[:, -LEVEL_STEPS:], axis=1)


def plateau_flags(loss: np.ndarray, lr: np.ndarray | None = None, window: int = WINDOW
                  ) -> tuple[list[bool], float]:
    """Per step: is the window ending there flat, with the loss near its start? And the start.

    Example:
        >>> flags, start = plateau_flags(np.full(40, 2.0))
        >>> sum(flags), start
        (11, 2.0)
    """
    start = _median(loss[:START_STEPS])
    n = len(loss)
    if n < window:
        return [False] * n, start
    mid, slope, se, level = _window_stats(np.asarray(loss, dtype=float), window)
    flags = [False] * (window - 1)
    for k, t in enumerate(range(window - 1, n)):
        lo = t - window + 1
        change, noise = slope[k] * window / mid[k], se[k] * window / mid[k]
        ramp = (lr is not None and math.isfinite(lr[lo]) and math.isfinite(lr[t])
                and lr[lo] < 0.9 * lr[t])
        flat = abs(change) < max(MIN_REL_DROP, NOISE_SE * noise)
        flags.append(bool(flat and not ramp and level[k] >= PROGRESS_FRAC * start))
    return flags, start


def still_learning(loss: np.ndarray) -> bool:
    """True when the loss over all the early steps read falls steadily: a slow-but-steady run
    (an LSTM leaving log(10) late, a frozen backbone whose head learns slowly), judged on the
    whole record rather than on one window. Either the level at the end is below
    ``PROGRESS_FRAC`` of the start, or the Theil-Sen change over the whole span is a drop of at
    least ``MIN_REL_DROP`` beyond ``NOISE_SE`` standard errors.

    Example:
        >>> still_learning(np.linspace(2.35, 2.2, 100)), still_learning(np.full(100, 2.3))
        (True, False)
    """
    start, level = _median(loss[:START_STEPS]), _median(loss[-LEVEL_STEPS:])
    if level < PROGRESS_FRAC * start:
        return True
    slope, se = theil_sen(loss[:: max(1, len(loss) // 60)])  # subsampled: O(60^2) pairs
    n = len(loss[:: max(1, len(loss) // 60)])
    change, noise = slope * n / level, se * n / level
    return bool(change < -MIN_REL_DROP and -change > NOISE_SE * noise)


def cannot_learn(meta: dict, steps: list[dict]) -> list[str | None]:
    """Per step record: why the net cannot learn, from the records up to it; None if no sign.

    Strong signs (``FAST`` path), measured: ``"vanishing"`` / ``"exploding"`` (relative
    gradients ``VANISH_ORDERS`` lower / higher on the input side for ``EVIDENCE_PERSIST``
    steps), ``"stalled"`` (latest sampled update ratios ``STALL_ORDERS`` lower on the input
    side), ``"tiny-steps"`` (every layer's latest update ratio below ``TINY_STEP``).
    Weak signs (``MID`` path): ``"saturated"`` (latest sample: the median hidden
    sigmoid/tanh site has ``SAT_FRAC`` of its outputs at the bounds) and ``"vanilla-rnn"``
    (a gateless recurrent layer: its gradient through time decays geometrically), ``"closed-gate"``
    (an LSTM/GRU whose keep gate was closed at attach: the same decay).

    Example:
        >>> meta = {"layers": [{"name": str(i), "kind": "linear"} for i in range(6)]}
        >>> st = [{"step": 1, "grad_norm": {str(i): 10.0 ** (i - 8) for i in range(6)},
        ...        "weight_norm": {str(i): 1.0 for i in range(6)}}] * 3
        >>> cannot_learn(meta, st)
        [None, None, 'vanishing']
    """
    names = profile_layers(meta)
    g = matrix(steps, "grad_norm", names)
    w = matrix(steps, "weight_norm", names)
    w[~(w > 1e-12)] = np.nan  # zero-initialised weights have no relative scale
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = log10_safe(g) - np.log10(w)
    u = matrix(steps, "update_ratio", names)
    sites = [a["name"] for a in saturating_hidden_sites(meta)]
    vanilla = bool(vanilla_rnns(meta))
    closed = bool(closed_gates(meta))
    out: list[str | None] = []
    down = up = 0
    last_u, saturated, udrop, un = None, False, math.nan, 0
    drops = side_drops(rel) if names else [(math.nan, math.nan, 0)] * len(steps)
    for i, s in enumerate(steps):
        drop, _, n = drops[i]
        # a head above a flat body (a pooler + classifier on an encoder) is no decay with depth:
        # the vanishing-gradient rule's own exception (series.head_step)
        head = drop >= VANISH_ORDERS and head_step(rel[i], MIN_LAYERS) and not (rel[i] <= ZERO_LOG).any()
        down = down + 1 if n >= MIN_LAYERS and drop >= VANISH_ORDERS and not head else 0
        up = up + 1 if n >= MIN_LAYERS and drop <= -VANISH_ORDERS else 0
        if names and np.isfinite(u[i]).any():
            last_u = log10_safe(u[i], UPDATE_FLOOR)
            udrop, _, un = side_drop(last_u)
        acts = s.get("act") or {}
        fr = [as_float((acts.get(a) or {}).get("sat_frac")) for a in sites if a in acts]
        if fr:
            saturated = float(np.nanmedian(fr)) >= SAT_FRAC
        why = ("vanishing" if down >= EVIDENCE_PERSIST else
               "exploding" if up >= EVIDENCE_PERSIST else None)
        if why is None and last_u is not None:
            if un >= MIN_LAYERS and udrop >= STALL_ORDERS:
                why = "stalled"
            elif np.nanmax(last_u) < math.log10(TINY_STEP):
                why = "tiny-steps"
        if why is None:
            why = ("saturated" if saturated else "vanilla-rnn" if vanilla else
                   "closed-gate" if closed else None)
        out.append(why)
    return out


def _frozen_and_reused(meta: dict) -> dict:
    """``{"frozen_weight_layers", "weight_layers"}`` when weight layers are frozen, and
    ``{"reused_layer", "reused_calls"}`` for the layer applied most often (3+ times) per forward."""
    weights = [ly for ly in meta.get("layers", []) if ly.get("kind") in PROFILE_KINDS]
    frozen = sum(ly.get("trainable", True) is False for ly in weights)
    reused = max(((ly["calls"], ly["name"]) for ly in weights if ly.get("calls", 1) > 2), default=None)
    return {**({"frozen_weight_layers": frozen, "weight_layers": len(weights)} if frozen else {}),
            **({"reused_layer": reused[1], "reused_calls": reused[0]} if reused else {})}


def loss_plateau(meta: dict, steps: list[dict]) -> list[Finding]:
    """The loss stuck near its start early in training (sooner when the gradients say why).

    Example:
        >>> loss_plateau({"layers": []}, [{"step": t, "loss": 2.0 / t} for t in range(1, 80)])
        []
    """
    st = [s for s in used_steps(steps) if math.isfinite(as_float(s.get("loss")))]
    st = [s for s in st if int(s.get("step", 0)) <= EARLY_STEPS]
    if len(st) < min(p[0] for p in PATHS.values()):
        return []
    loss = np.array([as_float(s["loss"]) for s in st])
    lr = np.array([as_float(s.get("lr")) for s in st])
    why = cannot_learn(meta, st)
    path = j = None
    for name, (win, per, signs) in PATHS.items():
        flags, start = plateau_flags(loss, lr, win)
        if signs is not None:
            flags = [f and w in signs for f, w in zip(flags, why)]
        i = first_persistent(flags, per)  # the first win - 1 flags are False
        if i is not None and (j is None or i + per - 1 < j):
            j, path = i + per - 1, name  # the step where the plateau is established
    if j is None:
        return []
    if path == "loss only" and still_learning(loss):
        return []
    window, persist, _ = PATHS[path]
    level = _median(loss[max(0, j - LEVEL_STEPS + 1):j + 1])
    if _median(loss[-LEVEL_STEPS:]) < PROGRESS_FRAC * level:  # the run has left the plateau since
        return []
    ev = {"loss_start": round(start, 4), "loss_level": round(level, 4),
          "level_over_start": round(level / start, 3) if start else None,
          "min_rel_change": MIN_REL_DROP, "window": window, "flat_windows": persist,
          "progress_frac": PROGRESS_FRAC, "path": path,
          "gradient_evidence": why[j] if path != "loss only" else None, **_frozen_and_reused(meta), **short_memory(meta)}
    if (meta.get("config") or {}).get("several_optimizers"):  # a GAN's generator loss need not fall
        ev["several_optimizers"] = True
    because = "" if path == "loss only" else f"; {SIGN_TEXT[why[j]]}"
    msg = (f"the loss stopped improving: {level:.4g} at step {st[j].get('step')} vs {start:.4g} "
           f"at the start, flat over the {window + persist - 1} steps before it ({persist} sliding "
           f"{window}-step windows){because}")
    remedies = REMEDIES.get(why[j] if path != "loss only" else None, REMEDIES[None])
    return [Finding("loss-plateau", "warning", msg, [], ev, remedies, int(st[j].get("step", j)),
                    REF)]
