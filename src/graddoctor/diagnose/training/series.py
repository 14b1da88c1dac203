"""Pull per-layer arrays out of watch's step records (pure functions, numpy).

The records follow the run-log format (``notes/RUNLOG.md``): ``meta`` lists the
layers in execution order, each step maps layer -> number under keys such as
``grad_norm``, ``weight_norm`` and ``update_ratio``; ``None`` means "no value".

Example:
    >>> meta = {"layers": [{"name": "0", "kind": "linear", "trainable": True}]}
    >>> steps = [{"step": 0, "grad_norm": {"0": 2.0}}, {"step": 1, "grad_norm": {"0": None}}]
    >>> matrix(steps, "grad_norm", ["0"]).tolist()
    [[2.0], [nan]]
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from graddoctor.modelmap import PROFILE_KINDS  # noqa: F401 - re-exported for the rules
from graddoctor.runlog import as_float  # noqa: F401 - re-exported for the rules

#: log10 floor for exact zeros (a fully dead path gives grad == 0, not None)
LOG_FLOOR = -30.0
#: at or below this a log10 value is an exact zero: a relative gradient log10(0 / |w|) reads
#: LOG_FLOOR - log10 |w|, above LOG_FLOOR for weights of norm < 1 (nil in float32 all the same)
ZERO_LOG = LOG_FLOOR / 2
#: log10 floor for a zero update/weight ratio: a float32 step below ~eps * |w| rounds away
UPDATE_FLOOR = -7.0


#: last name parts of separate attention query / key projections (BERT, DistilBERT, T5, Llama,
#: nanoGPT-style): their gradient flows only through the softmax scores, which are ~uniform at
#: init, so it is orders below the value path's by construction (a healthy 2-layer BERT: query
#: and key at 1e-4.6 relative gradient, value and output at 1e-2.7). They are off the signal's
#: path through depth and left out of the depth profile. Fused projections (GPT-2 ``c_attn``,
#: ``nn.MultiheadAttention.in_proj``) carry the value path too and stay in.
SCORE_PROJECTIONS = frozenset({"query", "key", "q_proj", "k_proj", "q_lin", "k_lin", "query_proj", "key_proj"})
#: short names that count only under a module whose path names attention (T5 ``SelfAttention.q``)
SHORT_SCORE_PROJECTIONS = frozenset({"q", "k", "wq", "wk", "to_q", "to_k"})


def _score_projection(name: str) -> bool:
    parent, _, last = name.lower().rpartition(".")
    return last in SCORE_PROJECTIONS or (last in SHORT_SCORE_PROJECTIONS and "att" in parent)


def profile_layers(meta: dict) -> list[str]:
    """Names of trainable weight layers (``PROFILE_KINDS``) in execution order, attention
    score projections (``SCORE_PROJECTIONS``) left out.

    Example:
        >>> profile_layers({"layers": [{"name": "l.0.attention.self.query", "kind": "linear"},
        ...                            {"name": "l.0.attention.self.value", "kind": "linear"},
        ...                            {"name": "mlp.k", "kind": "linear"}]})
        ['l.0.attention.self.value', 'mlp.k']
    """
    return [
        ly["name"] for ly in meta.get("layers", [])
        if ly.get("kind") in PROFILE_KINDS and ly.get("trainable", True)
        and not _score_projection(ly["name"])
    ]


def used_steps(steps: list[dict]) -> list[dict]:
    """Steps that really updated the model (AMP-skipped steps are left out)."""
    return [s for s in steps if not s.get("skipped", False)]


def matrix(steps: list[dict], key: str, names: list[str]) -> np.ndarray:
    """[steps x names] float array of ``step[key][name]``; nan where absent or null."""
    out = np.full((len(steps), len(names)), np.nan)
    for i, s in enumerate(steps):
        d = s.get(key) or {}
        for j, n in enumerate(names):
            out[i, j] = as_float(d.get(n))
    return out


def sampled(steps: list[dict], key: str) -> list[dict]:
    """The steps on which ``key`` was measured (sampled statistics)."""
    return [s for s in steps if s.get(key)]


def nonfinite_step(s: dict) -> bool:
    """True when a step's loss is NaN/Inf or any layer counted non-finite gradient values.

    Example:
        >>> nonfinite_step({"loss": "nan"}), nonfinite_step({"loss": 1.0, "nonfinite": {"0": 0}})
        (True, False)
    """
    if s.get("loss") is not None and not math.isfinite(as_float(s.get("loss"))):
        return True
    return any((c or 0) > 0 for c in (s.get("nonfinite") or {}).values())


def log10_safe(x: np.ndarray, floor: float = LOG_FLOOR) -> np.ndarray:
    """log10 with exact zeros mapped to ``floor``, negatives/nan/inf to nan."""
    x = np.asarray(x, dtype=float)
    out = np.full(x.shape, np.nan)
    pos = np.isfinite(x) & (x > 0)
    out[pos] = np.log10(x[pos])
    out[np.isfinite(x) & (x == 0)] = floor
    return out


def rose(values: np.ndarray, f0: int, j: int, n: int, factor: float) -> bool:
    """``values[j]`` is non-finite or >= ``factor`` x the median of the finite ones among the
    ``n`` from ``f0`` before ``j`` (True when there is none to compare).

    Example:
        >>> rose(np.array([1.0, 1.2, 0.9, 5.0]), 0, 3, 3, 3.0), rose(np.array([1.0, 2.0]), 0, 1, 3, 3.0)
        (True, False)
    """
    before = values[f0: min(f0 + n, j)]
    before = before[np.isfinite(before)]
    start = float(np.median(before)) if len(before) else math.nan
    return not math.isfinite(values[j]) or not math.isfinite(start) or float(values[j]) >= factor * start


def side_drop(logs: np.ndarray) -> tuple[float, float, int]:
    """Drop in orders of magnitude from the output side to the input side of a profile.

    ``logs``: log10 values per layer, input side first (nan = no value). The input
    side is the first third of the layers with a value, the output side the last
    third (at least one layer each); each side is summarised by its median, so
    one odd layer (the first layer sees the raw input scale) cannot decide alone.

    Returns:
        (drop, orders_per_layer, n): drop > 0 means the input side is smaller.

    Example:
        >>> side_drop(np.array([-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]))
        (4.0, 1.0, 6)
    """
    v = logs[np.isfinite(logs)]
    n = len(v)
    if n < 2:
        return math.nan, math.nan, n
    k = max(1, n // 3)
    drop = float(np.median(v[-k:]) - np.median(v[:k]))
    gap = (n - 1) - (k - 1)  # distance between the centres of the two sides, in layers
    return drop, drop / gap, n


def side_drops(logs: np.ndarray) -> list[tuple[float, float, int]]:
    """``side_drop`` of every row of ``logs`` (steps x layers): rows with a value in every layer
    at once (the usual case: one numpy call per side), the others row by row; the same numbers.

    Example:
        >>> side_drops(np.array([[-3.0, -2.0, -1.0], [-1.0, np.nan, -1.0]]))
        [(2.0, 1.0, 3), (0.0, 0.0, 2)]
    """
    logs = np.asarray(logs, dtype=float)
    if logs.ndim != 2 or logs.shape[0] == 0:
        return [side_drop(r) for r in logs]
    full = np.isfinite(logs).all(axis=1)
    n = logs.shape[1]
    out: list[tuple[float, float, int]] = [side_drop(r) if not ok else (math.nan, math.nan, n)
                                           for r, ok in zip(logs, full)]
    if n >= 2 and full.any():
        k = max(1, n // 3)
        rows = logs[full]
        drop = np.median(rows[:, -k:], axis=1) - np.median(rows[:, :k], axis=1)
        for at, d in zip(np.flatnonzero(full), drop):
            out[at] = (float(d), float(d) / ((n - 1) - (k - 1)), n)
    return out


#: a classifier head: the last layers of a profile, whose relative gradient may sit far above
#: the body's (a pooler + classifier on a transformer encoder)
HEAD_LAYERS = 2
#: ... when the body without them drops less than this many orders, the drop is the head's
HEAD_BODY_ORDERS = 1.0


def head_step(logs: np.ndarray, min_layers: int) -> bool:
    """The drop of a profile is one step between its last ``HEAD_LAYERS`` layers and a flat body
    (the body alone drops < ``HEAD_BODY_ORDERS``, with >= ``min_layers`` layers): a head's
    scale against its body, not a gradient that decays with depth. Measured: a healthy 2-layer
    BERT classifier under the HF Trainer reads a 2.2-order drop, its 8 encoder layers within
    0.4 orders of each other and the pooler and classifier 2-3 orders above them.

    Example:
        >>> head_step(np.array([-2.5, -2.2, -2.5, -2.3, -2.6, -2.2, -0.3, 0.5]), 4)
        True
        >>> head_step(np.array([-6.0, -5.0, -4.0, -3.0, -2.0, -1.0]), 4)
        False
        >>> head_step(np.array([-1.7, -1.7, -1.8, 0.6]), 4), head_step(np.array([-6.0, -4.5, -3.0, 0.0]), 4)
        (True, False)
    """
    v = logs[np.isfinite(logs)]
    # a profile too short for a 2-layer head reads a 1-layer one (a 4-layer MLP: 3 body layers and
    # its classifier, whose weights started small: a zero or muP 1/width readout)
    head = HEAD_LAYERS if len(v) - HEAD_LAYERS >= min_layers else 1
    if len(v) - head < (min_layers if head == HEAD_LAYERS else 3):  # 3 body layers: first, middle, last
        return False
    return side_drop(v[:-head])[0] < HEAD_BODY_ORDERS


def first_persistent(flags: list[bool], persist: int) -> int | None:
    """Index of the first run of ``persist`` consecutive True values, else None.

    A record shorter than ``persist`` counts when every value is True.

    Example:
        >>> first_persistent([False, True, True, True], 3), first_persistent([True, False], 2)
        (1, None)
    """
    run = 0
    for i, f in enumerate(flags):
        run = run + 1 if f else 0
        if run >= persist:
            return i - persist + 1
    if flags and len(flags) < persist and all(flags):
        return 0
    return None


def later_dead_path(logs: np.ndarray, after: int, orders: float, persist: int, min_layers: int
                    ) -> tuple[int, np.ndarray, list[float]] | None:
    """The first ``persist`` rows in a row after row ``after`` of a relative-gradient profile
    (steps x layers, log10) whose input side is ``orders`` below the output side with a layer at
    zero gradient (below ``10^(LOG_FLOOR / 2)`` relative: nil in float32 whatever the weights'
    norm): ``(row, median profile of those rows, every row's drop)``, or None. A body that died
    later in the run (a learning rate that killed every ReLU), after a first profile that was only
    a head above a flat body.

    Example:
        >>> logs = np.array([[-3.0, -3.0, -3.0, -3.0, -1.0, -1.0]] * 2 + [[-31.0] * 4 + [-1.0] * 2] * 3)
        >>> later_dead_path(logs, 0, 2.0, 3, 4)[0]
        2
    """
    drops = side_drops(logs)
    flags = [k > after and n >= min_layers and d >= orders and bool((row < LOG_FLOOR / 2).any())
             for k, ((d, _, n), row) in enumerate(zip(drops, logs))]
    return persistent_rows(logs, flags, persist, drops)


def persistent_rows(logs: np.ndarray, flags: list[bool], persist: int,
                    drops: list[tuple[float, float, int]]) -> tuple[int, np.ndarray, list[float]] | None:
    """The first run of ``persist`` flagged rows of ``logs`` (steps x layers): ``(row, the median
    profile of those rows, every row's finite drop)`` from ``side_drops``, or None.

    Example:
        >>> logs = np.array([[-1.0, 0.0], [-3.0, 0.0], [-5.0, np.nan]])
        >>> row, prof, _ = persistent_rows(logs, [False, True, True], 2, side_drops(logs)); row, prof.tolist()
        (1, [-4.0, 0.0])
    """
    j = first_persistent(flags, persist)
    if j is None:
        return None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a layer with no value in those rows
        prof = np.nanmedian(logs[j:j + persist], axis=0)
    return j, prof, [d for d, _, _ in drops if math.isfinite(d)]


def persistent_profile(logs: np.ndarray, sign: float, orders: float, persist: int,
                       min_layers: int) -> tuple[int, np.ndarray, list[float]] | None:
    """``persistent_rows`` of the rows where ``sign * drop >= orders``, among the rows with at least
    ``min_layers`` layers (the others are skipped, not breaks: a GAN's generator steps, recording
    its few layers only, come between its critic's): ``(row, profile, drops)``, or None.

    Example:
        >>> logs = np.array([[-5.0, -3.0, 0.0], [-1.0, np.nan, np.nan], [-5.0, -3.0, 0.0]])
        >>> persistent_profile(logs, +1.0, 2.0, 2, 3)[0]
        0
    """
    drops = side_drops(logs)
    rows = [i for i, (_, _, n) in enumerate(drops) if n >= min_layers]
    hit = persistent_rows(np.asarray(logs)[rows], [sign * drops[i][0] >= orders for i in rows], persist, drops)
    return None if hit is None else (rows[hit[0]], *hit[1:])


#: rows in a row a body must get exactly zero gradient (``dead_body``): a zero-init gain (ReZero)
#: cuts its branches at the first step only
DEAD_ROWS = 10


def dead_body(logs: np.ndarray, min_layers: int, persist: int = DEAD_ROWS) -> tuple[int, np.ndarray, list[float]] | None:
    """The first ``persist`` rows in a row of a relative-gradient profile (steps x layers, log10)
    in which every layer but an output-side third gets exactly zero gradient (below
    ``10^(LOG_FLOOR / 2)``), at least ``min_layers`` of them, while some layer still gets one:
    ``(row, median profile of those rows, every row's drop)``, or None. A cut above the whole
    body (norm gains zeroed by a bad checkpoint load): the input and output thirds both sit at
    zero, so their drop says nothing.

    Example:
        >>> logs = np.array([[-3.0] * 5 + [-1.0]] * 2 + [[-31.0] * 5 + [-1.0]] * 10)
        >>> dead_body(logs, 4)[0]
        2
    """
    logs = np.asarray(logs, dtype=float)
    flags = []
    for row in logs:
        v = row[np.isfinite(row)]
        zero = v < LOG_FLOOR / 2
        keep = max(1, len(v) // 3)  # the output side may still get a gradient
        flags.append(bool(len(v) > keep and zero.sum() >= min_layers and zero[:-keep].all() and not zero.all()))
    return persistent_rows(logs, flags, persist, side_drops(logs)) if any(flags) else None


#: a layer whose weight RMS is below this fraction of the profile's median is near zero: a head
#: or branch that starts at zero (muP's zero readout, an adapter's up-projection, LoRA's B)
NEAR_ZERO_RMS = 0.1


def near_zero_weights(meta: dict, steps: list[dict], names: list[str]) -> np.ndarray:
    """[steps x layers] True where a layer's weight RMS (``weight_norm`` / sqrt(``numel``)) is
    below ``NEAR_ZERO_RMS`` of that step's median over ``names``: its relative gradient ||g||/||w||
    is inflated by a norm that has not grown to a typical scale yet. ``steps`` as the rows of
    ``matrix``.

    Example:
        >>> meta = {"layers": [{"name": n, "numel": 100} for n in "abc"]}
        >>> near_zero_weights(meta, [{"weight_norm": {"a": 1.0, "b": 1.0, "c": 0.01}}], ["a", "b", "c"]).tolist()
        [[False, False, True]]
    """
    return near_zero_rows(meta, matrix(steps, "weight_norm", names), names)


def near_zero_rows(meta: dict, w: np.ndarray, names: list[str]) -> np.ndarray:
    """``near_zero_weights`` of a ``[steps x layers]`` weight-norm matrix already built."""
    numel = {ly["name"]: float(ly.get("numel") or 0) for ly in meta.get("layers", [])}
    size = np.array([numel.get(n, 0.0) for n in names])
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row with no weight norm: all-NaN median
        rms = np.where(size > 0, w / np.sqrt(np.where(size > 0, size, 1.0)), np.nan)
        med = np.nanmedian(np.where(np.isfinite(rms), rms, np.nan), axis=1, keepdims=True) if rms.size else rms
    with np.errstate(invalid="ignore"):
        return np.asarray(rms < NEAR_ZERO_RMS * med) & np.isfinite(rms)


#: a vanishing drop flagged on under this fraction of the steps, and on none of the last
#: ``TRANSIENT_ROWS``, is a start-up transient (a zero-init branch or LoRA's B growing from 0)
TRANSIENT_FRAC, TRANSIENT_ROWS = 0.1, 20


def transient(flags: list[bool]) -> bool:
    """The flagged rows are few (under ``TRANSIENT_FRAC``) and none of the last ``TRANSIENT_ROWS``.

    Example:
        >>> transient([True] * 3 + [False] * 60), transient([True] * 3 + [False] * 10)
        (True, False)
    """
    return (len(flags) >= TRANSIENT_ROWS and not any(flags[-TRANSIENT_ROWS:])
            and sum(flags) < TRANSIENT_FRAC * len(flags))
