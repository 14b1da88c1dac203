"""Activation statistics for watch, collected only on sampled forward passes.

``ActivationSampler.start()`` (called by watch's root forward pre-hook when the
coming step is sampled) registers forward hooks on the activation modules and,
if the model has functional activations (``F.relu``, ``x.tanh()``, ...), enters a
``FunctionalActivationMode`` plus push/pop hooks on the modules that own them,
so that functional sites get the same names as in ``ModelMap``
(``"<owner>/<kind>#<i>"``). ``stop()`` (root forward post-hook) removes all of
it again. Unsampled forwards run with no hook at all.

Per site and sampled forward (moments add over repeated calls, e.g. time steps):
mean, std, zero fraction, saturated fraction (thresholds in ``graddoctor.stats``),
and for the ReLU family a per-unit "ever active" mask (unit = channel for conv
outputs and 4-D+ tensors, else the last dimension). ``dead_frac`` is the fraction
of units not active (> 0) in any of the last ``dead_window`` sampled batches.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    >>> s = ActivationSampler(net, [("1", "relu", "relu", False, "1")], {}, dead_window=4)
    >>> s.start(); _ = net(torch.randn(5, 3)); stats = s.stop()
    >>> tuple(stats.shape)
    (1, 6)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import nn

from .inputs import first_tensor
from .modelmap import FunctionalActivationMode
from .stats import activation_moments, active_units, dead_fraction, moments_to_stats

#: columns of ``ActivationSampler.stop()``
STAT_NAMES = ("mean", "std", "zero_frac", "sat_frac", "dead_frac", "seen")

Site = tuple[str, str, str, bool, str]  # name, kind, family, functional, owner


class ActivationSampler:
    """Collect activation statistics on the forwards between ``start()`` and ``stop()``.

    Args:
        root: the (unwrapped) model.
        sites: ``(name, kind, family, functional, owner)`` per activation site (ModelMap order).
        conv_sites: names of sites whose units are channels (outputs of conv layers).
        dead_window: number of sampled batches the dead-unit masks span.
    """

    def __init__(self, root: nn.Module, sites: list[Site], conv_sites: set | dict,
                 dead_window: int = 10) -> None:
        self.root = root
        self.sites = sites
        self.index = {s[0]: i for i, s in enumerate(sites)}
        self.kind = {s[0]: s[1] for s in sites}
        self.family = {s[0]: s[2] for s in sites}
        self.conv_sites = set(conv_sites)
        names: dict[str, nn.Module] = {}
        for n, m in root.named_modules(remove_duplicate=False):
            names.setdefault(n, m)
        self.modules = {s[0]: names[s[0]] for s in sites if not s[3] and s[0] in names}
        owner_names = {s[4] for s in sites if s[3]}
        self.owners = {n: names[n] for n in owner_names if n in names}
        self.has_functional = any(s[3] for s in sites)
        self.dead_window = dead_window
        self._masks: dict[str, deque] = {}
        self._handles: list[Any] = []
        self._mode: FunctionalActivationMode | None = None
        self._moments: torch.Tensor | None = None
        self._cur_mask: dict[str, torch.Tensor] = {}
        self._stack: list[str] = []
        self._in_act = 0
        self._fn_counter: dict[tuple[str, str], int] = {}
        self.active = False

    # ---- collection

    def _add(self, name: str, out: Any) -> None:
        x = first_tensor(out)
        i = self.index.get(name)
        if x is None or i is None or not x.is_floating_point():
            return
        m = activation_moments(x, self.kind[name])
        if self._moments is None:
            self._moments = torch.zeros(len(self.sites), 5, device=x.device)
        self._moments[i] += m.to(self._moments.device)
        if self.family[name] == "relu":
            dim = 1 if (name in self.conv_sites or x.dim() >= 4) and x.dim() > 1 else max(x.dim() - 1, 0)
            act = active_units(x, dim)
            prev = self._cur_mask.get(name)
            self._cur_mask[name] = act if prev is None or prev.shape != act.shape else prev | act

    def _module_pre(self, module: nn.Module, args: Any) -> None:
        self._in_act += 1

    def _module_post(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            self._in_act -= 1
            self._add(name, out)
        return hook

    def _owner_pre(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any) -> None:
            self._stack.append(name)
        return hook

    def _owner_post(self, module: nn.Module, args: Any, out: Any) -> None:
        if self._stack:
            self._stack.pop()

    def _on_functional(self, kind: str, args: tuple, out: Any) -> None:
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
        self._moments, self._cur_mask, self._fn_counter = None, {}, {}
        self._stack, self._in_act = [], 0
        try:
            for name, m in self.modules.items():
                self._handles.append(m.register_forward_pre_hook(self._module_pre))
                self._handles.append(m.register_forward_hook(self._module_post(name), always_call=True))
            if self.has_functional:
                for name, m in self.owners.items():
                    self._handles.append(m.register_forward_pre_hook(self._owner_pre(name)))
                    self._handles.append(m.register_forward_hook(self._owner_post, always_call=True))
                self._mode = FunctionalActivationMode(self._on_functional, lambda: self._in_act > 0)
                self._mode.__enter__()
        except BaseException:
            self._remove()
            raise

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        self.active = False

    def stop(self) -> torch.Tensor | None:
        """Remove the hooks; the statistics ``[sites, 6]`` (``STAT_NAMES``) or None if nothing was seen.

        ``seen`` is 1 for the sites called in this forward; other rows are meaningless.
        """
        if not self.active:
            return None
        self._remove()
        mom = self._moments
        if mom is None:
            return None
        dead = torch.full((len(self.sites),), float("nan"), device=mom.device)
        for name, mask in self._cur_mask.items():
            q = self._masks.get(name)
            if q is None or (q and q[-1].shape != mask.shape):
                q = self._masks[name] = deque(maxlen=self.dead_window)
            q.append(mask)
            dead[self.index[name]] = dead_fraction(torch.stack(list(q))).to(mom.device)
        seen = (mom[:, 0] > 0).float()
        return torch.cat([moments_to_stats(mom), dead[:, None], seen[:, None]], dim=1)

    def close(self) -> None:
        """Remove every hook (idempotent); the dead-unit windows are kept for a re-attach."""
        self._remove()


__all__ = ["STAT_NAMES", "ActivationSampler"]
