"""The depth trend of a per-layer profile (log10 values in execution order), by layer role.

Layers are grouped by *role* (their name with whole-number path components replaced by ``#``:
``h.3.attn.c_attn`` -> ``h.#.attn.c_attn``), a least-squares line of log10(value) against the
layer's position is fitted in each role with at least 3 layers (without any, in each role of 2),
and the slopes' median (weighted by role size) is the per-layer rate. See ``trend_of_logs`` for
the orders over depth.

Example:
    >>> round(trend_of_logs(["0", "1", "2"], [-3.0, -2.0, -1.0])["orders"], 6)
    2.0
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

_FLOOR = 1e-45  # below the smallest float32 subnormal: an underflowed gradient counts as this
_DIGITS = re.compile(r"\d+")


def role(name: str) -> str:
    """A layer's role: its name with the stage/block indices of its container path replaced by ``#``.

    Every number in a container part counts as an index (``layer1.0`` -> ``layer#.#``,
    ``s1.b1`` -> ``s#.b#``, ``stages.0.blocks.1``, ``encoder.layer.3``, ``h.3``,
    ``model.layers.3``); the last part keeps its name (``conv1`` and ``conv2`` of one
    block are two roles) unless it is a bare index (``features.12`` -> ``features.#``).

    Example:
        >>> role("transformer.h.3.attn.c_attn"), role("12"), role("layer1.0.conv1"), role("s2.b1.conv")
        ('transformer.h.#.attn.c_attn', '#', 'layer#.#.conv1', 's#.b#.conv')
    """
    parts = name.split(".")
    head = [_DIGITS.sub("#", part) for part in parts[:-1]]
    last = "#" if parts[-1].isdigit() else parts[-1]
    return ".".join([*head, last])


def log10(v: float) -> float:
    """log10 with underflow floored at 1e-45 and non-finite values kept as +inf."""
    if not math.isfinite(v):
        return math.inf
    return math.log10(max(v, _FLOOR))


def depth_trend(names: Sequence[str], values: Sequence[float]) -> dict[str, float] | None:
    """Per-layer rate (orders of magnitude per layer) and orders over depth of a per-layer profile.

    Positive orders: the value grows from the input side to the output side.

    Example:
        >>> depth_trend(["0", "1", "2", "3"], [1e-6, 1e-4, 1e-2, 1.0])["orders"]
        6.0
    """
    return trend_of_logs(names, [log10(v) for v in values])


def trend_of_logs(names: Sequence[str], logs: Sequence[float], chain: Sequence[bool] | None = None,
                  shapes: Sequence[Any] | None = None, kinds: Sequence[str] | None = None) -> dict[str, float] | None:
    """``depth_trend`` of a profile given as log10 values (non-finite ones left out).

    ``shapes`` (optional, per layer): a role of 2 counts only when both layers have the same
    shape (a stack of two like blocks, not one block in each of two stages of different
    widths and resolutions, as Swin's or a 2-stage CNN's). ``chain`` (optional, per layer):
    without any role to fit, the one line over the profile is fitted over the layers marked
    True only (the probe's ``cut`` layers less the output: every backward path passes through
    them), so a lone block's side branches (q/k projections under uniform attention, a
    branch before a global pooling) and the head's loss-set scale are not read as a decay
    with depth; fewer than 3 such layers: no trend. ``kinds`` (optional, per layer: "conv",
    "linear", ...): a role holds layers of one kind, and the chain's line is fitted over its most
    common kind. A convolution's gradient per element is spread over its positions, so a pooled
    head's is not comparable with it: read together (one role in a flat ``nn.Sequential``), a
    healthy 2-conv net with a global average pool over a 64x64 map read 4.3 orders of
    "vanishing" between its convs and its head (plain autograd: 1.4 orders between their weight
    gradients), a VGG-style stack with batch norm 2.1. Roles of different kinds each over their
    own stretch are in series: their decays add (``_in_series``).

    Example:
        >>> trend_of_logs(["0", "1", "2"], [-900.0, -450.0, 0.0])["orders"]
        900.0
        >>> trend_of_logs(["q", "mlp", "pool", "head"], [-7.0, -4.0, -2.5, -1.0], chain=[False, False, True, False])
        >>> round(trend_of_logs(["0", "2", "6"], [-6.0, -6.1, -1.7], kinds=["conv", "conv", "linear"])["orders"], 6)
        -0.2
    """
    pts = [(i, y) for i, y in enumerate(logs) if math.isfinite(y)]
    if len(pts) < 3:
        return None
    groups: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for i, y in pts:
        groups.setdefault((role(names[i]), kinds[i] if kinds is not None else ""), []).append((i, y))
    used = ([g for g in groups.values() if len(g) >= 3]
            or [g for g in groups.values() if len(g) == 2 and (shapes is None or shapes[g[0][0]] == shapes[g[1][0]])])
    fits = [(_slope(g), len(g)) for g in used]  # 2 points per role: a stack of 2 blocks
    if not fits and chain is not None:
        pts = [(i, y) for i, y in pts if chain[i]]
        if kinds is not None and pts:
            common = Counter(kinds[i] for i, _ in pts).most_common(1)[0][0]
            pts = [(i, y) for i, y in pts if kinds[i] == common]
        if len(pts) < 3:
            return None
    if kinds is not None and (series := _in_series(used, kinds)) is not None:
        return series
    rate = _weighted_median(fits) if fits else _slope(pts)
    # a rate fitted over at least half the depth is the model's (the blocks' roles leave out
    # the stem and the head); one from a shorter stretch holds over that stretch only: a 3-conv
    # front end (Wav2Vec2's feature encoder, the only role repeated 3 times in a 2-block model)
    # says nothing of the 17 layers after it (its 0.27 orders/layer read as 5.1 orders)
    n = len(logs)
    span = max((g[-1][0] - g[0][0] for g in used), default=n - 1)
    return {"rate": rate, "orders": rate * (n - 1 if 2 * span >= n - 1 else span), "roles": len(fits) or 1}


def _in_series(used: list[list[tuple[int, float]]], kinds: Sequence[str]) -> dict[str, float] | None:
    """Roles of two or more kinds, each over its own stretch of the chain (a conv trunk, then a
    stack of Linear layers after the pool): in series, so their decays add (orders = the sum of
    slope x span); None where the roles interleave (blocks: their median rate stands). A median
    read a 6-conv ReLU trunk's flat slope for a 6-layer sigmoid head decaying 4.6 orders.

    Example:
        >>> conv, head = [(0, -6.0), (1, -6.0), (2, -6.0)], [(3, -6.0), (4, -4.0), (5, -2.0)]
        >>> _in_series([conv, head], ["conv"] * 3 + ["linear"] * 3)["orders"]
        4.0
    """
    if len({kinds[g[0][0]] for g in used}) < 2:
        return None
    spans = sorted((g[0][0], g[-1][0], g) for g in used)
    if any(a[1] > b[0] for a, b in zip(spans, spans[1:])):
        return None
    orders = sum(_slope(g) * (last - first) for first, last, g in spans)
    width = sum(last - first for first, last, _ in spans)
    return {"rate": orders / width if width else 0.0, "orders": orders, "roles": len(used)}


def size_free(names: Sequence[str], logs: Sequence[float], act_var: Sequence[float],
              free: set[str]) -> list[float]:
    """log10 of dL/dy x rms(y) for the layers in ``free`` (a normalisation removes their output's size:
    ``graddoctor.modelmap.scale``), centred on the median size of their role so that they stay
    comparable with the other layers; the other values as they are.

    Example:
        >>> size_free(["b.0.o", "b.1.o", "b.2.o"], [0.0, -1.0, -2.0], [1e-6, 1e-4, 1e-2], {"b.0.o", "b.1.o", "b.2.o"})
        [-1.0, -1.0, -1.0]
    """
    lv = {n: log10(v) for n, v in zip(names, act_var) if n in free and 0 < v < math.inf}
    by_role: dict[str, list[float]] = {}
    for n, v in lv.items():
        by_role.setdefault(role(n), []).append(v)
    mid = {r: sorted(vs)[len(vs) // 2] for r, vs in by_role.items()}
    return [y + 0.5 * (lv[n] - mid[role(n)]) if n in lv and math.isfinite(y) else y for n, y in zip(names, logs)]


def _slope(pts: Sequence[tuple[int, float]]) -> float:
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else 0.0


def _weighted_median(pairs: Sequence[tuple[float, int]]) -> float:
    pairs = sorted(pairs)
    half, acc = sum(w for _, w in pairs) / 2, 0
    for v, w in pairs:
        acc += w
        if acc >= half:
            return v
    return pairs[-1][0]


__all__ = ["depth_trend", "log10", "role", "size_free", "trend_of_logs"]
