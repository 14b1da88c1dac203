"""``TensorNorms``: the L2 norm of each tensor of a fixed list, in few fused calls (watch's
per-step gradient norms, ``measure.monitor.ring``).

Example:
    >>> import torch
    >>> tn = TensorNorms([torch.zeros(3, 3), torch.zeros(2)])
    >>> ts = [torch.ones(3, 3), torch.ones(2)]
    >>> [round(v, 3) for v in tn.ordered([ts[i] for i in tn.order], torch.empty(2)).tolist()]
    [3.0, 1.414]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from graddoctor.measure.stats import tensor_norms

#: small tensors of one shape and dtype, at least this many, are measured with one stack + one
#: norm along a dimension instead of a norm call each (e.g. the bias vectors of a deep MLP)
GROUP_MIN = 4
#: "small": at most this many elements (stacking copies them)
GROUP_MAX_NUMEL = 4096
#: a tensor RMS under which float32 squares are largely denormal (slow on x86 CPUs): sum in float64
TINY_RMS = 1e-15


class TensorNorms:
    """The L2 norm of each tensor of a fixed list (same shapes and dtypes on every call).

    Tensors are measured in ``order``: first one fused ``torch._foreach_norm`` over the
    large (or unique) ones, then one ``stack`` + ``vector_norm(dim=1)`` per group of
    ``GROUP_MIN`` or more small tensors of the same shape and dtype (per-tensor dispatch
    is most of the cost of many small norms: 50 bias vectors take 83 us instead of 154 us
    inside a training step). ``ordered(tensors, out)`` takes the tensors already in
    ``order`` and writes ``out[j]`` = norm of ``tensors[j]``; sparse tensors fall back to
    ``tensor_norms``.

    On the CPU float32 squares under ~1e-38 are denormal, ~20x slower on x86: a default-init
    50-layer ReLU MLP (gradients 1e-21 at the input side) took 16 ms a norm call instead of 0.7,
    and watch cost 1.15x its step. A tensor whose RMS fell below ``TINY_RMS`` once has its
    squares summed in float64 from then on (exact; the others stay in ``acc``; ``note``,
    called by watch where a host read is free).

    Example:
        >>> shapes = [(300, 300)] + [(3,)] * 4
        >>> tn = TensorNorms([torch.zeros(s) for s in shapes])
        >>> ts = [torch.ones(s) for s in shapes]
        >>> tn.ordered([ts[i] for i in tn.order], torch.empty(5)).tolist()
        [300.0, 1.7320507764816284, 1.7320507764816284, 1.7320507764816284, 1.7320507764816284]
    """

    def __init__(self, tensors: Sequence[torch.Tensor], acc: torch.dtype = torch.float32) -> None:
        self.acc = acc
        groups: dict[tuple, list[int]] = {}
        for i, t in enumerate(tensors):
            if t.numel() <= GROUP_MAX_NUMEL and t.layout == torch.strided:
                groups.setdefault((tuple(t.shape), t.dtype), []).append(i)
        stacked = [g for g in groups.values() if len(g) >= GROUP_MIN]
        in_group = {i for g in stacked for i in g}
        fused = [i for i in range(len(tensors)) if i not in in_group]
        self.order = fused + [i for g in stacked for i in g]
        self._guard = acc == torch.float32 and all(t.device.type == "cpu" for t in tensors)
        self._rms_scale = torch.tensor([math.sqrt(max(1, tensors[i].numel())) for i in self.order])
        self._tiny: list[bool] = [False] * len(tensors)  # in order: summed in float64
        #: once some are tiny: per dtype (acc, float64) the fused positions, as a list and a tensor
        self._split: list[tuple[list[int], torch.Tensor, torch.dtype]] | None = None
        self._n_fused = len(fused)
        bounds, start = [], len(fused)
        for g in stacked:
            bounds.append((start, start + len(g)))
            start += len(g)
        self._groups = bounds
        self._group_dt = [acc] * len(bounds)  # float64 for a group holding a tiny tensor

    def views(self, out: torch.Tensor) -> list[torch.Tensor]:
        """The slices of ``out`` that ``ordered`` writes (build once per output row)."""
        nf = self._n_fused
        return [out, out[:nf]] + [out[a:b] for a, b in self._groups]

    def ordered(self, tensors: list[torch.Tensor], out: torch.Tensor | list[torch.Tensor]
                ) -> torch.Tensor:
        """Norms of ``tensors`` (listed in ``order``) into ``out`` (a row, or ``views(row)``)."""
        outs = self.views(out) if isinstance(out, torch.Tensor) else out
        nf = self._n_fused
        try:
            if nf and self._split is None:
                torch.stack(torch._foreach_norm(tensors[:nf], 2, dtype=self.acc), out=outs[1])
            elif nf:
                for idx, at, dt in self._split:
                    norms = torch._foreach_norm([tensors[i] for i in idx], 2, dtype=dt)
                    outs[1].index_copy_(0, at, torch.stack(norms).to(outs[1].dtype))
            for (a, b), o, dt in zip(self._groups, outs[2:], self._group_dt):
                x = torch.stack(tensors[a:b]).reshape(b - a, -1)
                if dt == self.acc:
                    torch.linalg.vector_norm(x, 2, dim=1, dtype=dt, out=o)
                else:
                    o.copy_(torch.linalg.vector_norm(x, 2, dim=1, dtype=dt))
        except (RuntimeError, NotImplementedError, TypeError):
            if all(t.layout == torch.strided and not t.is_complex() for t in tensors):
                raise  # sparse and complex tensors (an S4D/LRU layer's) take the slow path
            outs[0].copy_(tensor_norms(tensors, torch.float64 if any(self._tiny) else self.acc))
        return outs[0]

    def note(self, row: torch.Tensor) -> None:
        """After ``ordered`` wrote ``row`` (float32 on the CPU: one host read): tensors whose RMS
        fell below ``TINY_RMS`` have their squares summed in float64 from the next call on."""
        if not self._guard:
            return
        rms = row / self._rms_scale
        small = ((rms > 0) & (rms < TINY_RMS)).tolist()
        if not any(s and not t for s, t in zip(small, self._tiny)):
            return
        self._tiny = tiny = [a or b for a, b in zip(self._tiny, small)]
        parts = [[i for i in range(self._n_fused) if tiny[i] == flag] for flag in (False, True)]
        self._split = [(idx, torch.tensor(idx, dtype=torch.long), dt)
                       for idx, dt in zip(parts, (self.acc, torch.float64)) if idx]
        self._group_dt = [torch.float64 if any(tiny[a:b]) else self.acc for a, b in self._groups]


__all__ = ["GROUP_MAX_NUMEL", "GROUP_MIN", "TINY_RMS", "TensorNorms"]
