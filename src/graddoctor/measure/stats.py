"""Pure tensor statistics used by ``watch``: fused per-layer norms, update norms,
activation moments (saturation as ``graddoctor.kinds`` defines it) and dead-unit fractions.

Every function takes tensors and returns tensors on the same device; none of
them synchronises with the host (no ``.item()``), so they can run every step.

Per-layer norms are computed with ONE fused ``torch._foreach_norm`` over all
tensors, squared, and summed per layer with ``index_add`` over a precomputed
index (``segment_index``): the L2 norm of a layer is ``sqrt(sum_p ||p||^2)``
over its parameters. Results are *squared* norms so that shards can be summed
across ranks before the square root (see ``graddoctor.measure.distributed``).

Example:
    >>> import torch
    >>> a, b, c = torch.ones(3), torch.ones(4), torch.ones(2)
    >>> idx = segment_index([2, 1])          # layer 0 owns a, b; layer 1 owns c
    >>> [round(v, 4) for v in layer_sq_norms([a, b, c], idx, 2).tolist()]
    [7.0, 2.0]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from graddoctor import kinds

#: the moments of an activation output, in the column order ``moments_to_stats`` reads
MOMENTS = ("count", "sum", "sumsq", "zeros", "saturated")


def segment_index(sizes: Sequence[int], device: torch.device | str | None = None) -> torch.Tensor:
    """Layer index of each tensor, for layers owning ``sizes[i]`` tensors each.

    Example:
        >>> segment_index([2, 0, 1]).tolist()
        [0, 0, 2]
    """
    sizes_t = torch.tensor(list(sizes), dtype=torch.long)
    return torch.repeat_interleave(torch.arange(len(sizes_t)), sizes_t).to(device)


def dense_values(t: torch.Tensor) -> torch.Tensor:
    """The stored values of a sparse tensor (COO coalesced first: duplicates summed), else ``t``;
    same norm and same NaN/Inf count as the tensor (``nn.Embedding(sparse=True)`` gradients).

    Example:
        >>> i = torch.tensor([[0, 0, 2]])
        >>> dense_values(torch.sparse_coo_tensor(i, torch.tensor([1.0, 2.0, 4.0]), (3,))).tolist()
        [3.0, 4.0]
    """
    if t.layout == torch.strided:
        return t
    return t.coalesce()._values() if t.is_sparse else t.values()


def _real(t: torch.Tensor) -> torch.Tensor:
    """A complex tensor as its (real, imaginary) pairs: the same L2 norm, in a real dtype."""
    return torch.view_as_real(t) if t.is_complex() else t


def tensor_norms(
    tensors: Sequence[torch.Tensor], acc: torch.dtype | None = None, out: torch.Tensor | None = None,
) -> torch.Tensor:
    """L2 norm of each tensor from one fused ``_foreach_norm``, accumulated in ``acc`` (by
    default float32, or float64 when a tensor is float64); written into ``out`` (dtype
    ``acc``, shape ``[len(tensors)]``) when given. Sparse tensors are measured on their
    values (``dense_values``), complex ones on their (real, imaginary) pairs.

    Example:
        >>> tensor_norms([torch.tensor([3.0, 4.0]), torch.ones(4)]).tolist()
        [5.0, 2.0]
    """
    ts = list(tensors)
    if not ts:
        return torch.zeros(0, dtype=acc or torch.float32) if out is None else out
    if acc is None:
        acc = torch.float64 if any(t.dtype == torch.float64 for t in ts) else torch.float32
    try:
        norms = torch._foreach_norm(ts, 2, dtype=acc)
    except (RuntimeError, NotImplementedError):
        if all(t.layout == torch.strided and not t.is_complex() for t in ts):
            raise
        norms = torch._foreach_norm([_real(dense_values(t)) for t in ts], 2, dtype=acc)
    return torch.stack(norms) if out is None else torch.stack(norms, out=out)


def tensor_sq_norms(
    tensors: Sequence[torch.Tensor], dtype: torch.dtype = torch.float32, acc: torch.dtype | None = None,
) -> torch.Tensor:
    """Squared L2 norm of each tensor (``tensor_norms``), squared in ``dtype`` (float64: no
    overflow of the square for norms above 1.8e19).

    Example:
        >>> tensor_sq_norms([torch.tensor([3.0, 4.0])]).tolist()
        [25.0]
    """
    if not tensors:
        return torch.zeros(0, dtype=dtype)
    return tensor_norms(tensors, acc).to(dtype).square()


def layer_sq_norms(
    tensors: Sequence[torch.Tensor], index: torch.Tensor, n_layers: int,
    out: torch.Tensor | None = None, acc: torch.dtype | None = None,
) -> torch.Tensor:
    """Per-layer squared L2 norms: ``out[l] += sum of ||t||^2 over tensors with index l``.

    Args:
        tensors: the tensors (gradients, weights, updates), any dtype.
        index: layer index of each tensor (``segment_index``), on the tensors' device.
        n_layers: number of layers.
        out: optional accumulator of shape ``[n_layers]`` (float32 or float64; a fresh float32
            zero one otherwise).
        acc: accumulation dtype of the norms (see ``tensor_sq_norms``; None: from the tensors).
    """
    if out is None:
        device = tensors[0].device if tensors else index.device
        out = torch.zeros(n_layers, dtype=torch.float32, device=device)
    if tensors:
        out.index_add_(0, index, tensor_sq_norms(tensors, out.dtype, acc))
    return out


def layer_norms(groups: Sequence[Sequence[torch.Tensor | None]]) -> list[float | None]:
    """Convenience (host side): L2 norm of each group of tensors; None for a group with no tensor.

    Example:
        >>> layer_norms([[torch.tensor([3.0]), torch.tensor([4.0])], [None]])
        [5.0, None]
    """
    out: list[float | None] = []
    for g in groups:
        ts = [t for t in g if t is not None]
        out.append(float(layer_sq_norms(ts, segment_index([len(ts)]), 1).sqrt()) if ts else None)
    return out


def nonfinite_counts(tensors: Sequence[torch.Tensor], index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Per-layer count of NaN/Inf values (float32), one pass over the tensors.

    Example:
        >>> t = torch.tensor([1.0, float("nan"), float("inf")])
        >>> nonfinite_counts([t], segment_index([1]), 1).tolist()
        [2.0]
    """
    device = tensors[0].device if tensors else index.device
    out = torch.zeros(n_layers, dtype=torch.float32, device=device)
    if tensors:
        counts = torch.stack([(~torch.isfinite(dense_values(t))).sum() for t in tensors]).float()
        out.index_add_(0, index, counts)
    return out


def update_sq_norms(
    after: Sequence[torch.Tensor], before: Sequence[torch.Tensor], index: torch.Tensor, n_layers: int,
    in_place: bool = False, dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Per-layer squared norm of the update ``after - before`` (exact).

    ``in_place=True`` overwrites ``before`` with ``before - after`` (no new memory; same norm).

    Example:
        >>> round(update_sq_norms([torch.ones(2)], [torch.zeros(2)], segment_index([1]), 1).item(), 4)
        2.0
    """
    out = torch.zeros(n_layers, dtype=dtype, device=index.device)
    if not after:
        return out
    if in_place:
        torch._foreach_sub_(list(before), [a.detach() for a in after])
        return layer_sq_norms(before, index, n_layers, out=out)
    diffs = torch._foreach_sub([a.detach() for a in after], list(before))
    return layer_sq_norms(diffs, index, n_layers, out=out)


def round_significant(x: torch.Tensor, digits: int) -> torch.Tensor:
    """``x`` (float64) rounded to ``digits`` significant decimal digits, so that ``repr`` of each
    value is short (``m / 10**k`` and ``m * 10**k`` are the doubles nearest to the decimals for
    ``k <= 22``). Values outside ``[1e-15, 1e22)`` in magnitude, zeros and NaN/Inf are unchanged.

    Example:
        >>> round_significant(torch.tensor([0.123456789123, 98765.4321, 0.0], dtype=torch.float64), 4).tolist()
        [0.1235, 98770.0, 0.0]
    """
    ax = x.abs()
    ok = torch.isfinite(x) & (ax >= 1e-15) & (ax < 1e22)
    k = (digits - 1 - torch.floor(torch.log10(torch.where(ok, ax, 1.0)))).clamp(-22, 22)
    up = torch.pow(10.0, k.clamp(min=0))
    down = torch.pow(10.0, (-k).clamp(min=0))
    return torch.where(ok, torch.round(x * up / down) * down / up, x)


def unit_dim(x: torch.Tensor, channels_first: bool) -> int:
    """Which dimension of an activation output holds the units: channels (dim 1) for conv-like
    outputs, else the last; 0 for a scalar or a vector.

    Example:
        >>> unit_dim(torch.zeros(2, 3, 4, 4), True), unit_dim(torch.zeros(2, 5), False)
        (1, 1)
    """
    if x.dim() <= 1:
        return 0
    return 1 if channels_first else x.dim() - 1


def site_moments(x: torch.Tensor, kind: str, unit_dim: int) -> dict[str, torch.Tensor]:
    """One activation output -> the few one-pass reductions its statistics need.

    Args:
        x: the output of an activation of kind ``kind`` (any shape, floating point).
        kind: its activation kind (``graddoctor.kinds``).
        unit_dim: the dimension that holds the units (``unit_dim``).

    Returns:
        ``norm`` (L2, float32), ``nnz`` (non-zeros), ``sum`` (float32; omitted for
        ``kinds.RECTIFIED`` kinds, where it is the sum of ``units``), ``sat`` (count of
        ``kinds.saturated_mask``; bounded kinds only) and ``units`` (ReLU family: per-unit sums
        for ``kinds.RECTIFIED`` kinds, else per-unit maxima; a unit is active when > 0).
        ``norm ** 2`` is the sum of squares: the moments of ``MOMENTS`` follow (see
        ``moments_to_stats``). Avoided on CPU: ``torch.var_mean`` (a slow Welford loop) and
        ``torch.count_nonzero`` (30x slower than ``bool().sum(int32)``).

    Example:
        >>> m = site_moments(torch.tensor([[0.0, 1.0], [0.0, 3.0]]), "relu", 1)
        >>> m["units"].tolist(), int(m["nnz"]), round(float(m["norm"]) ** 2, 4)
        ([0.0, 4.0], 2, 10.0)
    """
    out = {"norm": torch.linalg.vector_norm(x, dtype=torch.float32),
           "nnz": x.bool().sum(dtype=torch.int32 if x.numel() < 2**31 else torch.int64)}
    if kinds.family(kind) == "relu":
        others = [d for d in range(x.dim()) if d != unit_dim]
        if kind in kinds.RECTIFIED:
            out["units"] = x.sum(dim=others, dtype=torch.float32) if others else x.float()
        else:
            out["sum"] = x.sum(dtype=torch.float32)
            out["units"] = (x.amax(dim=others) if others else x).float()
    else:
        out["sum"] = x.sum(dtype=torch.float32)
    sat = kinds.saturated_mask(x, kind)
    if sat is not None:
        out["sat"] = sat.sum()
    return out


def moments_to_stats(m: torch.Tensor) -> torch.Tensor:
    """``[..., 5]`` moments (``MOMENTS``) -> ``[..., 4]``: mean, std (population), zero fraction,
    saturated fraction.

    Example:
        >>> moments_to_stats(torch.tensor([4.0, 4.0, 8.0, 2.0, 0.0])).tolist()
        [1.0, 1.0, 0.5, 0.0]
    """
    n = m[..., 0].clamp_min(1)
    mean = m[..., 1] / n
    var = (m[..., 2] / n - mean * mean).clamp_min(0)
    return torch.stack([mean, var.sqrt(), m[..., 3] / n, m[..., 4] / n], dim=-1)


def dead_fractions(last_active: torch.Tensor, sample: int, window: int, site: torch.Tensor,
                   site_units: torch.Tensor) -> torch.Tensor:
    """Per activation site, the fraction of its units not active in any of the last ``window``
    samples (the current one, number ``sample``, included).

    Args:
        last_active: per unit (all sites' units concatenated), the number of the last sample
            it was active (> 0) in.
        sample: the current sample's number.
        window: samples a unit must stay inactive to count as dead.
        site: per unit, the index of its site.
        site_units: per site, its number of units (float).

    Returns:
        ``[sites]`` float32 fractions; NaN for a site without units.

    Example:
        >>> dead_fractions(torch.tensor([5, 1, 4, 2]), 5, 2, torch.tensor([0, 0, 0, 2]),
        ...                torch.tensor([3.0, 0.0, 1.0])).tolist()
        [0.3333333432674408, nan, 1.0]
    """
    dead = torch.zeros_like(site_units).index_add_(0, site, (last_active <= sample - window).to(site_units))
    return torch.where(site_units > 0, dead / site_units.clamp_min(1), float("nan"))


def histogram_range(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """``[lo, hi]`` (a device tensor, no host read) for a fixed-bin histogram of ``x``: each
    finite bound of the activation's output range, else ``x``'s finite min/max widened by 25%.

    Example:
        >>> histogram_range(torch.tensor([0.5, 2.0]), (0.0, float("inf"))).tolist()
        [0.0, 2.5]
    """
    v = x.detach().float()
    ok = torch.isfinite(v)
    lo_x, hi_x = torch.where(ok, v, math.inf).min(), torch.where(ok, v, -math.inf).max()
    lo_x = torch.where(torch.isfinite(lo_x), lo_x, 0.0)  # no finite value: [0, 1]
    hi_x = torch.where(torch.isfinite(hi_x), hi_x, 1.0)
    lo = torch.full((), bounds[0], device=x.device) if math.isfinite(bounds[0]) else lo_x - 0.25 * lo_x.abs()
    hi = torch.full((), bounds[1], device=x.device) if math.isfinite(bounds[1]) else hi_x + 0.25 * hi_x.abs()
    hi = torch.where(hi > lo, hi, lo + 1.0)
    return torch.stack([lo, hi]).float()


def histogram_counts(x: torch.Tensor, lo_hi: torch.Tensor, bins: int) -> torch.Tensor:
    """Counts of ``x`` in ``bins`` equal bins over ``[lo, hi]`` (``lo_hi``: a 2-element tensor),
    on ``x``'s device with no host read; values outside go to the end bins, NaN is not counted.
    Inside the range it bins as ``torch.histc(x, bins, lo, hi)``.

    Example:
        >>> histogram_counts(torch.tensor([0.0, 0.1, 0.9, 1.0, 5.0]), torch.tensor([0.0, 1.0]), 4).tolist()
        [2.0, 0.0, 0.0, 3.0]
    """
    v = x.detach().reshape(-1)
    lo, hi = lo_hi[0].to(v.device), lo_hi[1].to(v.device)
    # clamp sends +-inf and out-of-range values to the end bins; NaN goes to an extra bin that is dropped
    idx = (v.float() - lo).mul_(bins / (hi - lo)).clamp_(0, bins - 1).nan_to_num_(nan=bins).long()
    ones = torch.ones(1, device=v.device).expand(idx.numel())
    return torch.zeros(bins + 1, device=v.device).index_add_(0, idx, ones)[:bins]


__all__ = [
    "MOMENTS", "dead_fractions", "dense_values",
    "histogram_counts", "histogram_range", "layer_norms", "layer_sq_norms", "moments_to_stats", "nonfinite_counts", "round_significant",
    "segment_index", "site_moments", "tensor_norms", "tensor_sq_norms", "unit_dim", "update_sq_norms",
]
