"""Activation statistics for watch, collected only on sampled forward passes.

``ActivationSampler.start()`` (called by watch's root forward pre-hook when the
coming step is sampled) registers forward hooks on the activation modules and,
if the model has functional activations (``F.relu``, ``x.tanh()``, ...), enters a
``FunctionalActivationMode`` plus push/pop hooks on the modules that own them,
so that functional sites get the same names as in ``ModelMap``
(``"<owner>/<kind>#<i>"``). ``stop()`` (root forward post-hook) removes all of
it again. Unsampled forwards run with no hook at all.

Per site and sampled forward (moments add over repeated calls, e.g. time steps):
mean, std, zero fraction, saturated fraction (thresholds in ``graddoctor.kinds``), a
``HIST_BINS``-bin histogram over a range fixed per site at its first sample (the kind's
bounds where finite, else the first sample's range widened by 25%; values outside go to the
end bins; ``stats.histogram_counts``: on the device, read with the flush),
and for the ReLU family a per-unit "ever active" mask (unit = channel for conv
outputs and 4-D+ tensors, else the last dimension). ``dead_frac`` is the fraction
of units not active (> 0) in any of the last ``dead_window`` sampled batches
(fewer at the start of a run), kept as "last sample each unit was active" (one
integer per unit); the window restarts if the set of sampled sites or their unit
counts change.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> s = ActivationSampler(net, [("1", "relu", "relu", False, "1")], {}, dead_window=4)
    >>> s.start(); _ = net(torch.randn(5, 3)); stats = s.stop()
    >>> tuple(stats.shape) == (1, ROW_WIDTH)
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from graddoctor import kinds
from graddoctor.inputs import first_tensor
from graddoctor.measure.monitor.hooksafe import HandleBin, eager_only
from graddoctor.measure.stats import (
    MOMENTS,
    dead_fractions,
    histogram_counts,
    histogram_range,
    moments_to_stats,
    site_moments,
    unit_dim,
)
from graddoctor.modelmap import FunctionalActivationMode, modules_by_name

#: columns of ``ActivationSampler.stop()``
STAT_NAMES = ("mean", "std", "zero_frac", "sat_frac", "dead_frac", "seen")
#: bins of the per-site activation histogram; ``stop()`` rows: STAT_NAMES, lo, hi, then the counts
HIST_BINS = 32
ROW_WIDTH = len(STAT_NAMES) + 2 + HIST_BINS
_COUNT, _SUM, _SUMSQ, _ZEROS, _SAT = (MOMENTS.index(c) for c in ("count", "sum", "sumsq", "zeros", "saturated"))

Site = tuple[str, str, str, bool, str]  # name, kind, family, functional, owner


class ActivationSampler:
    """Collect activation statistics on the forwards between ``start()`` and ``stop()``.

    Args:
        root: the (unwrapped) model.
        sites: ``(name, kind, family, functional, owner)`` per activation site (ModelMap order).
        conv_sites: names of sites whose units are channels (outputs of conv layers).
        dead_window: number of sampled batches the dead-unit masks span.
        guard: runs each hook body (``guard(fn, *args)``) so an internal error stops the
            recording instead of the user's forward; None: run it as is.
        handles: where the hooks go when removed (``HandleBin``: not while torch iterates them).
    """

    def __init__(self, root: nn.Module, sites: list[Site], conv_sites: set | dict,
                 dead_window: int = 10, guard: Callable[..., Any] | None = None,
                 handles: HandleBin | None = None) -> None:
        self.root = root
        self._guard = guard if guard is not None else (lambda fn, *a: fn(*a))
        self._bin = handles if handles is not None else HandleBin()
        self.sites = sites
        self.index = {s[0]: i for i, s in enumerate(sites)}
        self.kind = {s[0]: s[1] for s in sites}
        self.conv_sites = set(conv_sites)
        names = modules_by_name(root)
        self.modules = {s[0]: names[s[0]] for s in sites if not s[3] and s[0] in names}
        owner_names = {s[4] for s in sites if s[3]}
        self.owners = {n: names[n] for n in owner_names if n in names}
        self.has_functional = any(s[3] for s in sites)
        self._post = {name: self._module_post(name) for name in self.modules}
        self.dead_window = dead_window
        # dead units: per unit (all ReLU sites concatenated), the last sample it was active
        self._dead_key: tuple = ()
        self._seg = self._units = self._last = None
        self._sample = 0
        self._idx_cache: dict[tuple, tuple] = {}
        self._ranges: dict[int, torch.Tensor] = {}  # site -> [lo, hi], fixed at its first sample
        self._handles: list[Any] = []
        self._mode: FunctionalActivationMode | None = None
        self._reset_calls()
        self._cur_mask: dict[str, torch.Tensor] = {}
        self._stack: list[str] = []
        self._in_act = 0
        self._fn_counter: dict[tuple[str, str], int] = {}
        self.active = False

    # ---- collection

    def _add(self, name: str, out: Any) -> None:
        x = out if isinstance(out, torch.Tensor) else first_tensor(out)
        i = self.index.get(name)
        if x is None or i is None or not x.is_floating_point() or x.numel() == 0:
            return
        x = x.detach()
        if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):  # float64: statistics in float32
            x = x.float()
        kind = self.kind[name]
        m = site_moments(x, kind, unit_dim(x, name in self.conv_sites or x.dim() >= 4))
        self._idx.append(i)
        self._n.append(float(x.numel()))
        self._norm.append(m["norm"])
        if i not in self._ranges:
            self._ranges[i] = histogram_range(x, kinds.bounds(kind))
        self._hist.append(histogram_counts(x, self._ranges[i], HIST_BINS))
        self._nnz.append(m["nnz"])
        if "sum" in m:
            self._sum.append((i, m["sum"]))
        if "sat" in m:
            self._sat.append((i, m["sat"]))
        if "units" in m:
            u, prev = m["units"], self._cur_mask.get(name)
            if prev is None or prev.shape != u.shape:
                self._cur_mask[name] = u
            else:
                self._cur_mask[name] = prev + u if kind in kinds.RECTIFIED else torch.maximum(prev, u)

    def _module_pre(self, module: nn.Module, args: Any) -> None:
        if self.active:
            self._in_act += 1

    def _module_post(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            if self.active:
                self._in_act = max(self._in_act - 1, 0)
                self._guard(self._add, name, out)
        return hook

    def _owner_pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            if self.active:
                self._stack.append(name)
        return hook

    def _owner_post(self, module: nn.Module, args: Any, out: Any) -> None:
        if self.active and self._stack:
            self._stack.pop()

    def _on_functional(self, kind: str, args: tuple, out: Any) -> None:
        if self.active:
            self._guard(self._add_functional, kind, out)

    def _add_functional(self, kind: str, out: Any) -> None:
        owner = self._stack[-1] if self._stack else ""
        key = (owner, kind)
        i = self._fn_counter.get(key, 0)
        self._fn_counter[key] = i + 1
        self._add(f"{owner or 'model'}/{kind}#{i}", out)

    # ---- lifecycle

    def start(self) -> None:
        """Register the sampling hooks (and the functional mode); no-op if already started."""
        if self.active:
            return
        self.active = True
        self._reset_calls()
        self._cur_mask, self._fn_counter = {}, {}
        self._stack, self._in_act = [], 0
        try:
            for name, m in self.modules.items():
                if self.has_functional:  # only the mode needs to know it runs inside a module
                    self._handles.append(m.register_forward_pre_hook(eager_only(self._module_pre)))
                self._handles.append(m.register_forward_hook(eager_only(self._post[name]), always_call=True))
            if self.has_functional:
                for name, m in self.owners.items():
                    self._handles.append(m.register_forward_pre_hook(eager_only(self._owner_pre(name))))
                    self._handles.append(m.register_forward_hook(eager_only(self._owner_post), always_call=True))
                self._mode = FunctionalActivationMode(self._on_functional, lambda: self._in_act > 0)
                self._mode.__enter__()
        except BaseException:
            self._remove()
            raise

    def _remove(self) -> None:
        handles, self._handles = self._handles, []
        self._bin.release(handles)
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        self.active = False

    def stop(self) -> torch.Tensor | None:
        """Remove the hooks; the statistics ``[sites, ROW_WIDTH]`` (``STAT_NAMES``, the histogram's
        lo and hi, its ``HIST_BINS`` counts) or None if nothing was seen.

        ``seen`` is 1 for the sites called in this forward; other rows are meaningless.
        """
        if not self.active:
            return None
        self._remove()
        if not self._idx:
            return None
        mom, dead = self._combine()
        hist = self._histograms(mom.device)
        self._reset_calls()
        seen = (mom[:, _COUNT] > 0).float()
        return torch.cat([moments_to_stats(mom), dead[:, None], seen[:, None], hist], dim=1)

    def _histograms(self, device: torch.device) -> torch.Tensor:
        """``[sites, 2 + HIST_BINS]``: each site's range and its counts summed over its calls."""
        idx = self._cached_index(tuple(self._idx), device)
        counts = torch.zeros(len(self.sites), HIST_BINS, device=device).index_add_(0, idx, torch.stack(self._hist))
        none = torch.zeros(2, device=device)
        ranges = torch.stack([self._ranges.get(j, none).to(device) for j in range(len(self.sites))])
        return torch.cat([ranges, counts], dim=1)

    def _reset_calls(self) -> None:
        self._idx: list[int] = []
        self._n: list[float] = []
        self._norm: list[torch.Tensor] = []
        self._nnz: list[torch.Tensor] = []
        self._sum: list[tuple[int, torch.Tensor]] = []
        self._sat: list[tuple[int, torch.Tensor]] = []
        self._hist: list[torch.Tensor] = []

    def _combine(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-site moments ``[sites, 5]`` (``MOMENTS``) and dead fractions."""
        S = len(self.sites)
        dev = self._norm[0].device
        key = (tuple(self._idx), tuple(self._n))
        if key not in self._idx_cache:  # the same sites every sampled forward: built once
            if len(self._idx_cache) > 16:
                self._idx_cache.clear()
            self._idx_cache[key] = (torch.tensor(self._idx, device=dev), torch.tensor(self._n, device=dev))
        idx, n = self._idx_cache[key]
        norm = torch.stack(self._norm)
        mom = torch.zeros(S, len(MOMENTS), device=dev)
        for col, per_call in ((_COUNT, n), (_SUMSQ, norm * norm), (_ZEROS, n - torch.stack(self._nnz).float())):
            mom[:, col].index_add_(0, idx, per_call)
        for col, items in ((_SUM, self._sum), (_SAT, self._sat)):
            if items:
                mom[:, col].index_add_(0, self._cached_index(tuple(i for i, _ in items), dev),
                                       torch.stack([v for _, v in items]).float())
        dead, unit_sums = self._dead(dev)
        mom[:, _SUM] += unit_sums
        return mom, dead

    def _cached_index(self, sel: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """``torch.tensor(sel)`` on ``device``, built once per distinct ``sel`` (no host-to-device
        copy on every sampled step)."""
        key = ("index", sel)
        hit = self._idx_cache.get(key)
        if hit is None:
            if len(self._idx_cache) > 16:
                self._idx_cache.clear()
            hit = self._idx_cache[key] = torch.tensor(sel, dtype=torch.long, device=device)
        return hit

    def _dead(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-site dead fraction (NaN for non-ReLU sites) and the per-site sums of ``kinds.RECTIFIED``
        sites' unit sums, for all sites in a few vectorised ops."""
        S = len(self.sites)
        if not self._cur_mask:
            return torch.full((S,), float("nan"), device=device), torch.zeros(S, device=device)
        names = list(self._cur_mask)
        key = tuple((n, self._cur_mask[n].numel()) for n in names)
        flat = torch.cat([self._cur_mask[n].reshape(-1) for n in names]).to(device)
        self._sample += 1
        if key != self._dead_key:  # first sample, or other sites/units than before: new window
            self._dead_key = key
            sizes = torch.tensor([k[1] for k in key])
            self._seg = torch.repeat_interleave(torch.tensor([self.index[n] for n in names]),
                                                sizes).to(device)
            self._is_sum = torch.repeat_interleave(
                torch.tensor([self.kind[n] in kinds.RECTIFIED for n in names]), sizes).to(device)
            self._units = torch.zeros(S, device=device).index_add_(
                0, self._seg, torch.ones(len(self._seg), device=device))
            self._last = torch.full((len(self._seg),), -(2**62), dtype=torch.long, device=device)
        self._last = torch.where(flat > 0, self._sample, self._last)
        dead = dead_fractions(self._last, self._sample, self.dead_window, self._seg, self._units)
        sums = torch.zeros(S, device=device).index_add_(0, self._seg, torch.where(self._is_sum, flat, 0.0))
        return dead, sums

    def close(self) -> None:
        """Remove every hook (idempotent); the dead-unit windows are kept for a re-attach."""
        self._remove()


__all__ = ["HIST_BINS", "ROW_WIDTH", "STAT_NAMES", "ActivationSampler"]
