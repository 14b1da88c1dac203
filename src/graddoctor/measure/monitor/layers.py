"""The layers watch records: parameter-owning modules and their parameters, with the
per-layer weight and update norms.

Layers come in ``ModelMap`` execution order (``ModelMap.param_groups``), or in
``named_modules`` order when no map could be built. Under FSDP every tensor is read
through its rank-local shard (``graddoctor.measure.distributed.local``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> layers = WatchedLayers(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)), None)
    >>> layers.names, layers.train_layers
    (['0', '2'], [0, 1])
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from graddoctor.measure import distributed as dist_
from graddoctor.measure.monitor.hooksafe import own_forward
from graddoctor.measure.monitor.optimizers import held_params, warn_foreign
from graddoctor.measure.stats import layer_sq_norms, segment_index, update_sq_norms
from graddoctor.modelmap import ModelMap
from graddoctor.stack import user_level


def map_model(root: nn.Module, inputs: Any, warn: bool = True) -> ModelMap | None:
    """``ModelMap(root, inputs)``, or None (with a warning, when ``warn``) when it fails.

    Args:
        root: the unwrapped model.
        inputs: example inputs of one forward.
        warn: warn when the map fails (watch: rank 0 only, so a distributed run warns once,
            not once per process).

    Returns:
        The map, or None: layers then come in ``named_modules`` order.

    Example:
        >>> import torch
        >>> map_model(nn.Linear(2, 1), torch.ones(1, 2)).layers[0].kind
        'linear'
    """
    try:
        with own_forward():  # its trace is no training forward, for any watcher of ``root``
            return ModelMap(root, inputs)
    except Exception as e:  # noqa: BLE001 - fall back to definition order
        if warn:
            warnings.warn(f"graddoctor.watch: ModelMap failed ({e}); layers in "
                          "named_modules order", stacklevel=user_level())
        return None


def param_groups(root: nn.Module, mm: ModelMap | None) -> list[tuple[str, list[nn.Parameter]]]:
    """``(module name, its parameters)`` per parameter-owning module: the map's order, else
    ``named_modules`` order (a parameter shared by several modules counts for the first).

    Example:
        >>> [name for name, _ in param_groups(nn.Sequential(nn.Linear(2, 2), nn.Tanh()), None)]
        ['0']
    """
    if mm is not None:
        return mm.param_groups(root)
    groups, seen = [], set()
    for n, m in root.named_modules():
        ps = [p for p in m.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in ps)
        if ps:
            groups.append((n, ps))
    return groups


class WatchedLayers:
    """The watched layers: names, modules, parameters and their layer index, norm dtypes.

    Args:
        root: the unwrapped model.
        mm: its ``ModelMap`` (None: ``named_modules`` order).
        sharded: read parameters through their rank-local shard (FSDP).
        held: ids of the parameters the optimizer holds, when it leaves some trainable ones out
            (``optimizers.held_params``): updates are measured for those only.

    Example:
        >>> layers = WatchedLayers(nn.Linear(3, 4), None)
        >>> round(layers.weight_sq().sum().item(), 2) > 0, layers.acc
        (True, torch.float32)
    """

    def __init__(self, root: nn.Module, mm: ModelMap | None, sharded: bool = False,
                 held: set[int] | None = None) -> None:
        self.groups = param_groups(root, mm)
        self.sharded = sharded
        modules = dict(root.named_modules())
        self.names = [dist_.clean_name(n) for n, _ in self.groups]
        self.modules = [modules.get(n) for n, _ in self.groups]
        self.n_layers = len(self.groups)
        self.params = [p for _, ps in self.groups for p in ps]
        self.device = self.params[0].device if self.params else torch.device("cpu")
        #: norms accumulated in float64 only for float64 parameters (decided once, not every step)
        self.acc = torch.float64 if any(p.dtype == torch.float64 for p in self.params) else torch.float32
        #: dtype of the per-layer statistics: float64 (squared norms up to 1e308) where available
        self.rdt = torch.float32 if self.device.type == "mps" else torch.float64
        self.index = segment_index([len(ps) for _, ps in self.groups], self.device)
        #: the optimizer held every trainable parameter at attach (a GAN's other half: it did not)
        self._whole = held is None
        self._trainable(held)

    def _trainable(self, held: set[int] | None) -> None:
        """The parameters whose updates are measured: trainable ones (and held by the optimizer)."""
        self._flags = tuple(p.requires_grad for p in self.params)
        trainable = [i for i, p in enumerate(self.params) if p.requires_grad and (held is None or id(p) in held)]
        self.train_params = [self.params[i] for i in trainable]
        self.train_index = self.index[torch.tensor(trainable, dtype=torch.long, device=self.device)]
        self.train_layers = sorted({int(i) for i in self.train_index.tolist()})

    def left_out_layers(self) -> set[int]:
        """Indexes of the layers with trainable parameters of which the optimizer holds none (a
        GAN's other network watched with one network's optimizer); empty when it holds them all.

        Example:
            >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
            >>> WatchedLayers(net, None, held={id(p) for p in net[1].parameters()}).left_out_layers()
            {0}
        """
        trainable = {i for i, (_, ps) in enumerate(self.groups) if any(p.requires_grad for p in ps)}
        return trainable - set(self.train_layers)  # the measured layers: trainable and held

    def refresh(self, root: nn.Module, optimizer: Any) -> None:
        """Follow ``requires_grad`` when it changed since the last call (a part unfrozen or frozen
        mid-run): the updates of what trains now are measured, and only of that. A part unfrozen
        but not given to an optimizer that held every trainable parameter at attach warns once
        (``optimizers.warn_foreign``: its gradient accumulates, it never moves).

        Args:
            root: the unwrapped model (for the parameters the optimizer leaves out).
            optimizer: the watched optimizer, or None.
        """
        if tuple(p.requires_grad for p in self.params) != self._flags:
            held = held_params(optimizer, root)
            self._trainable(held)
            if held is not None and self._whole:  # unfrozen, not given to the optimizer: one line, once
                self._whole = False
                warn_foreign(optimizer, root)

    def local(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The rank-local, detached part of each tensor."""
        if self.sharded:
            return [dist_.local(t).detach() for t in tensors]
        return [t.detach() for t in tensors]

    def weight_sq(self) -> torch.Tensor:
        """Per-layer squared weight norms ``[n_layers]`` (dtype ``rdt``), on the device."""
        out = torch.zeros(self.n_layers, device=self.device, dtype=self.rdt)
        return layer_sq_norms(self.local(self.params), self.index, self.n_layers, out=out, acc=self.acc)

    def snapshot(self) -> list[torch.Tensor]:
        """A copy of the trainable weights (for ``update_sq`` after the optimizer step)."""
        return [dist_.local(p).detach().clone() for p in self.train_params]

    def update_sq(self, snapshot: list[torch.Tensor]) -> torch.Tensor:
        """Per-layer squared norms of the update since ``snapshot`` (computed in it, in place)."""
        return update_sq_norms(self.local(self.train_params), snapshot, self.train_index, self.n_layers,
                               in_place=True, dtype=self.rdt)


__all__ = ["WatchedLayers", "map_model", "param_groups"]
