"""The probe's rescaled backward: gradients kept in range as mantissa x 2^exponent.

A deep saturating net shrinks its gradient by a near-constant factor per layer; in
float32 it underflows to exact zero some 50 layers from the output (a 10,000-layer
sigmoid MLP at PyTorch's default init loses ~0.8 orders of magnitude per layer, and
float32 ends at 1.4e-45). The probe keeps it in range: at a layer output whose gradient
RMS falls below ``sqrt(finfo.tiny)`` (2^-63 in float32) the tensor hook multiplies the
gradient by 2^k (a power of two: exact) and adds k to a running exponent; every
gradient read after that is the measured one times 2^-exponent, kept as log2
(``LogSquares``), so values far below any float's range are still measured.

This is exact only where *every* backward path to the input side passes through that
output: a cut of the autograd graph (each layer of a plain chain; not a layer inside a
residual branch, whose skip carries an unscaled gradient around it). ``cut_nodes`` finds
the cuts; the probe rescales at cuts only, so elsewhere an underflow stays an exact zero
(which ``probe_rules.zero_gradient_layers`` reads).
"""

from __future__ import annotations

import heapq
import math
from typing import Any

import torch


def cut_nodes(root: Any) -> set[Any]:
    """The autograd nodes that every backward path from ``root`` to older nodes passes through.

    Nodes are visited newest first (``_sequence_nr``: a node's inputs are older than it, so
    this is a topological order of the backward); a node popped when no other node is
    pending is a cut, provided its gradient arrives through one output only. Leaves
    (``AccumulateGrad``, nodes with no inputs) end paths and are not waited for. Linear in
    the graph's size; an empty set when the nodes carry no sequence numbers. The set holds
    the nodes (so their Python objects, and ``t.grad_fn is node``, stay the same).

    Example:
        >>> x = torch.randn(2, 3, requires_grad=True)
        >>> h = torch.tanh(x * 2)           # one path: a cut
        >>> s, c = h.sin(), h.cos()         # two branches: neither is a cut
        >>> cuts = cut_nodes((s + c).sum().grad_fn)
        >>> h.grad_fn in cuts, s.grad_fn in cuts
        (True, False)
    """
    if root is None or not hasattr(root, "_sequence_nr"):
        return set()
    heap: list[tuple[int, int, Any]] = [(-root._sequence_nr(), 0, root)]
    slots: dict[int, set[int]] = {id(root): {0}}
    seen = {id(root): root}  # holds every node visited, so no id is reused while this runs
    cuts = set()
    while heap:
        _, _, node = heapq.heappop(heap)
        if not heap and len(slots[id(node)]) == 1:
            cuts.add(node)
        for nxt, slot in node.next_functions:
            if nxt is None or not nxt.next_functions:  # a leaf: the path ends there
                continue
            slots.setdefault(id(nxt), set()).add(slot)
            if id(nxt) not in seen:
                seen[id(nxt)] = nxt
                heapq.heappush(heap, (-nxt._sequence_nr(), len(seen), nxt))
    return cuts


def rescale_exponent(sum_sq: float, count: int, dtype: torch.dtype) -> int:
    """k >= 0 such that the gradient times 2^k has an RMS near 1, or 0 when it is in range.

    In range: an RMS at or above ``sqrt(finfo(dtype).tiny)``, or an exact zero (nothing to
    keep), or a non-finite one.

    Example:
        >>> rescale_exponent(1e-50, 4, torch.float32), rescale_exponent(1.0, 4, torch.float32)
        (84, 0)
    """
    if count == 0 or not 0.0 < sum_sq < math.inf:
        return 0
    rms = math.sqrt(sum_sq / count)
    if rms >= math.sqrt(torch.finfo(dtype).tiny):
        return 0
    return -math.frexp(rms)[1]


def scaled(g: torch.Tensor, k: int) -> torch.Tensor:
    """``g * 2^k``, exact (computed in float64: 2^k may exceed ``g``'s dtype's range).

    Example:
        >>> scaled(torch.tensor([2.0 ** -140]), 100).item() == 2.0 ** -40
        True
    """
    return (g.double() * math.ldexp(1.0, k)).to(g.dtype)


class LogSquares:
    """A running sum of squares and element count, the sum kept as log2 (any magnitude).

    ``add(sum_sq, count, exponent)``: ``sum_sq`` measured on a gradient that had been
    multiplied by 2^exponent. ``log10_rms()``: log10 of the root mean square, -inf for
    an exact zero, +inf when a non-finite value was seen.

    Example:
        >>> s = LogSquares()
        >>> s.add(8.0, 2, 1000)    # the gradient had been multiplied by 2^1000: its RMS is 2 * 2^-1000
        >>> round(s.log10_rms(), 2)
        -300.73
    """

    __slots__ = ("log2_sum", "count", "bad")

    def __init__(self) -> None:
        self.log2_sum = -math.inf
        self.count = 0
        self.bad = False

    def add(self, sum_sq: float, count: int, exponent: int) -> None:
        self.count += count
        if not math.isfinite(sum_sq):
            self.bad = True
        elif sum_sq > 0.0:
            v = math.log2(sum_sq) - 2 * exponent
            hi, lo = max(v, self.log2_sum), min(v, self.log2_sum)
            self.log2_sum = hi + math.log2(1.0 + 2.0 ** (lo - hi)) if lo > -math.inf else hi

    def log10_rms(self) -> float:
        if self.bad:
            return math.inf
        if self.count == 0 or self.log2_sum == -math.inf:
            return -math.inf
        return (self.log2_sum - math.log2(self.count)) / 2 * math.log10(2.0)


def from_log10(v: float) -> float:
    """10^v as a float: 0.0 below float64's range, inf for +inf.

    Example:
        >>> from_log10(-2.0), from_log10(-400.0), from_log10(float("inf"))
        (0.01, 0.0, inf)
    """
    if v == math.inf:
        return math.inf
    if v < -330:
        return 0.0
    return 10.0 ** v


__all__ = ["LogSquares", "cut_nodes", "from_log10", "rescale_exponent", "scaled"]
