"""The ring buffer of watch: per-step gradient norms on the device, one block with named
columns per flush.

Per step, ``Ring.write`` puts the L2 norm of every gradient tensor into one row of a
preallocated ``[flush_every, tensors]`` buffer on the parameters' device: one fused
``torch._foreach_norm`` plus one stacked norm per group of small same-shape tensors
(``norms.TensorNorms``). The rest of the step (presence, NaN/Inf counts, sampled weight and
update norms, loss, AMP flags) waits in its host-side ``Row`` as device tensors. At flush,
``Ring.flush_block`` assembles the rows into one ``[rows, Columns.width]`` block (per-layer
sums over the tensors of each layer), all-reduces it once when distributed and takes the
square roots: one block, one host transfer.

Example:
    >>> cols = Columns(2)
    >>> cols.width, cols["loss"], cols["weight_norm"]
    (12, 10, slice(6, 8, None))
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import torch

from graddoctor.measure import distributed as dist_
from graddoctor.measure.norms import TensorNorms
from graddoctor.measure.stats import tensor_norms

_NONE = itertools.repeat(None)  # ``any(map(operator.is_, grads, _NONE))``: is a gradient missing?


class Columns:
    """The named column layout of a flush block.

    Per layer (``n_layers`` columns each, summed over shards): ``grad_norm``, ``present``
    (gradient tensors present), ``nonfinite`` (NaN/Inf count), ``weight_norm``, ``update_norm``;
    the ``*_norm`` columns hold squared norms until ``Ring.flush_block`` takes their roots.
    Per step (one column each, averaged over ranks when sharded): ``loss``, ``found_inf`` (AMP skipped it).

    Args:
        n_layers: number of layers.

    Example:
        >>> cols = Columns(3)
        >>> cols["present"], cols.split(list(range(cols.width)))["found_inf"]
        (slice(3, 6, None), 16)
    """

    PER_LAYER = ("grad_norm", "present", "nonfinite", "weight_norm", "update_norm")
    PER_STEP = ("loss", "found_inf")
    SQUARED = ("grad_norm", "weight_norm", "update_norm")

    def __init__(self, n_layers: int) -> None:
        L = n_layers
        self._at: dict[str, slice | int] = {name: slice(i * L, (i + 1) * L) for i, name in enumerate(self.PER_LAYER)}
        base = len(self.PER_LAYER) * L
        self._at.update({name: base + j for j, name in enumerate(self.PER_STEP)})
        self.width = base + len(self.PER_STEP)
        #: columns that are sums over shards (kept summed by ``distributed.reduce_block``)
        self.shard_summed = torch.zeros(self.width, dtype=torch.bool)
        self.shard_summed[:base] = True

    def __getitem__(self, name: str) -> Any:
        """The slice (per-layer column group) or index (per-step column) of ``name``."""
        return self._at[name]

    def split(self, row: list[float]) -> dict[str, Any]:
        """One block row (on the host) by column name."""
        return {name: row[at] for name, at in self._at.items()}


class Row:
    """What the host holds of one ring row (one step); tensors stay on the device until flush."""

    __slots__ = ("step", "grads", "skipped", "lrs", "loss", "present", "nonfinite", "weight_sq",
                 "update_sq", "update_layers", "scale", "found_inf", "kept")

    def __init__(self, step: int) -> None:
        self.step = step
        self.grads = True  # gradient norms written (False: the optimizer step was skipped)
        self.skipped = False
        self.lrs: list[Any] = []  # every param group's rate, in group order
        self.loss: torch.Tensor | None = None
        self.present: torch.Tensor | None = None  # per-layer present tensors, when some are missing
        self.nonfinite: torch.Tensor | None = None  # per-layer NaN/Inf value counts (CPU)
        self.weight_sq: torch.Tensor | None = None
        self.update_sq: torch.Tensor | None = None
        self.update_layers: list[int] | None = None  # the layers ``update_sq`` measured
        self.scale: torch.Tensor | None = None  # gradient scale still to divide by (fused AMP)
        self.found_inf: torch.Tensor | None = None
        self.kept = False  # the first gradient is the previous step's tensor (never cleared)


class Ring:
    """The per-step gradient norms of a fixed list of tensors, on their device, and one ``Row``
    per step; one column per tensor, in ``TensorNorms`` order (``params``).

    Args:
        params: the watched parameters (rank-local views), any order.
        index: the layer index of each parameter (``stats.segment_index``), on their device.
        n_layers: number of layers.
        capacity: rows (steps between flushes).
        acc: dtype of the norms; rdt: dtype of the flush block.

    Example:
        >>> import torch
        >>> from graddoctor.measure.stats import segment_index
        >>> ps = [torch.ones(2, 2, requires_grad=True), torch.ones(2, requires_grad=True)]
        >>> ring = Ring(ps, segment_index([2]), 1, capacity=4)
        >>> ring.append(1) and ring.write([torch.ones(2, 2), None])[2].tolist()
        [0]
        >>> ring.flush_block(1, count_nonfinite=False)[0, ring.columns["grad_norm"]].tolist()
        [2.0]
    """

    def __init__(self, params: list[torch.Tensor], index: torch.Tensor, n_layers: int, capacity: int,
                 acc: torch.dtype = torch.float32, rdt: torch.dtype = torch.float64) -> None:
        self.norms = TensorNorms(params, acc)
        order = torch.tensor(self.norms.order, dtype=torch.long, device=index.device)
        self.col_index = index[order]  # the layer of each column
        self.device, self.acc, self.rdt, self.n_layers = index.device, acc, rdt, n_layers
        self.data = torch.zeros(capacity, len(params), device=index.device, dtype=acc)
        self._views = [self.norms.views(row) for row in self.data]  # built once, not per step
        self.columns = Columns(n_layers)
        self.rows: list[Row] = []
        self._patterns: dict[tuple, tuple] = {}  # gradient presence -> (columns, layer counts)
        self.all_present = self.pattern((True,) * len(params))[1]

    def pattern(self, present: tuple[bool, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The columns whose gradient is present, and the per-layer count of present tensors."""
        hit = self._patterns.get(present)
        if hit is None:
            sel = torch.tensor([i for i, ok in enumerate(present) if ok], dtype=torch.long, device=self.device)
            has = torch.zeros(self.n_layers, device=self.device, dtype=self.rdt)
            has.index_add_(0, self.col_index[sel], torch.ones(len(sel), device=self.device, dtype=self.rdt))
            if len(self._patterns) > 64:
                self._patterns.clear()
            hit = self._patterns[present] = (sel, has)
        return hit

    def append(self, step: int) -> Row:
        """A new row for step ``step`` (the caller flushes a full ring first)."""
        row = Row(step)
        self.rows.append(row)
        return row

    def write(self, grads: list[torch.Tensor | None]
              ) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor | None]:
        """The norms of ``grads`` (in column order; None: missing) into the last row's ring row.

        Returns:
            The ring row (a view built once), the gradients present, and their columns (None
            when all are present).
        """
        views = self._views[len(self.rows) - 1]
        if not any(map(operator.is_, grads, _NONE)):
            self.norms.ordered(grads, views)
            return views[0], grads, None
        sel, self.rows[-1].present = self.pattern(tuple(g is not None for g in grads))
        grads = [g for g in grads if g is not None]  # frozen or unused parameters: the rarer path
        views[0].zero_()
        if grads:
            views[0].index_copy_(0, sel, tensor_norms(grads, self.acc))
        return views[0], grads, sel

    def flush_block(self, n: int, count_nonfinite: bool, mode: str = "single") -> torch.Tensor:
        """The first ``n`` rows as one ``[n, columns.width]`` block of norms (``Columns``).

        Args:
            n: rows to assemble.
            count_nonfinite: count the gradient tensors whose norm is NaN/Inf (where the rows
                carry no exact ``nonfinite`` count).
            mode: ``distributed.mode``: the block is all-reduced once unless "single".
        """
        cols, rows, rdt = self.columns, self.rows[:n], self.rdt
        block = torch.zeros(n, cols.width, device=self.device, dtype=rdt)
        sq = self.data[:n].to(rdt).square()
        no_grads = [i for i, row in enumerate(rows) if not row.grads]
        if no_grads:  # skipped AMP steps: their ring rows were never written
            sq[no_grads] = 0
        block[:, cols["grad_norm"]].index_add_(1, self.col_index, sq)
        block[:, cols["present"]] = self.all_present
        if count_nonfinite:
            block[:, cols["nonfinite"]].index_add_(1, self.col_index, (~torch.isfinite(sq)).to(rdt))
        for i, row in enumerate(rows):
            if not row.grads:
                block[i, cols["present"]] = 0
            elif row.present is not None:
                block[i, cols["present"]] = row.present
            for name, value in (("nonfinite", row.nonfinite), ("weight_norm", row.weight_sq),
                                ("update_norm", row.update_sq), ("found_inf", row.found_inf)):
                if value is not None:
                    block[i, cols[name]] = value
            if row.scale is not None:
                block[i, cols["grad_norm"]] /= row.scale.square()
        losses = [i for i, row in enumerate(rows) if row.loss is not None]
        if losses:
            block[losses, cols["loss"]] = torch.stack([rows[i].loss.to(self.device, rdt) for i in losses])
        block = dist_.reduce_block(block, cols.shard_summed, mode)
        for name in cols.SQUARED:  # squared norms (summed over shards) -> norms
            block[:, cols[name]].sqrt_()
        return block

    def drop(self, n: int) -> None:
        """Forget the first ``n`` rows; the rest move to the front of the ring."""
        keep = len(self.rows) - n
        if keep:
            self.data[:keep] = self.data[n:n + keep].clone()
        self.rows = self.rows[n:]


__all__ = ["Columns", "Ring", "Row"]
