"""The run-log records of watch: the meta line, and the step records built from a flushed block.

The format is described in ``graddoctor.runlog``. Values are float32-accurate statistics,
written with 8 significant digits (``stats.round_significant``): short JSON, 2x faster.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.measure.monitor.layers import WatchedLayers
    >>> builder = StepRecords(WatchedLayers(nn.Linear(2, 1), None), [])
    >>> sorted(meta_record("run", builder.layers, None, {"flush_every": 50})["layers"][0])[:4]
    ['activation', 'depth', 'is_output', 'kind']
"""

from __future__ import annotations

import math
from typing import Any

import torch

from graddoctor.measure.monitor.activations import HIST_BINS, ROW_WIDTH, STAT_NAMES
from graddoctor.measure.monitor.gates import gate_biases, gate_memory, keep_gate
from graddoctor.measure.monitor.layers import WatchedLayers
from graddoctor.measure.monitor.ring import Columns, Row
from graddoctor.measure.stats import round_significant
from graddoctor.modelmap import ModelMap, layer_kind
from graddoctor.runlog import VERSION

#: the activation statistics a step record keeps per site (``dead_frac`` too, for ReLU sites)
_ACT_STATS = ("mean", "std", "zero_frac", "sat_frac")


def meta_record(run_id: str, layers: WatchedLayers, mm: ModelMap | None, config: dict,
                outside: set[int] | None = None) -> dict:
    """The run log's meta line: layers, activation sites and the watch configuration.

    Args:
        run_id: the run's id.
        layers: the watched layers.
        mm: the model's map (None: layer facts from the modules alone, no activation sites).
        config: the ``config`` entry (periods, options, distributed mode, ...).
        outside: indexes of layers whose trainable parameters the optimizer leaves out (a GAN's
            other network): written ``trainable: False`` with ``outside_optimizer: True``, so the
            rules do not read them as part of this run (their gradients come from this run's loss,
            their steps from another optimizer, or from none).

    Returns:
        The meta record (``type: "meta"``).

    Example:
        >>> from torch import nn
        >>> meta = meta_record("r1", WatchedLayers(nn.Linear(2, 1), None), None, {})
        >>> meta["layers"][0]["kind"], meta["activations"]
        ('linear', [])
    """
    entries = []
    outside = outside or set()
    for i, ((n, ps), name, m) in enumerate(zip(layers.groups, layers.names, layers.modules)):
        lay = mm._layer_by_name.get(n) if mm is not None else None
        entries.append({
            "name": name, "type": lay.type if lay else (type(m).__name__ if m is not None else ""),
            "kind": lay.kind if lay else (layer_kind(m) if m is not None else "other"),
            "depth": lay.depth if lay else None, "min_depth": lay.min_depth if lay else None,
            "activation": lay.activation if lay else None, "is_output": bool(lay and lay.is_output),
            "numel": sum(p.numel() for p in ps), "trainable": any(p.requires_grad for p in ps) and i not in outside,
            **({"outside_optimizer": True} if i in outside else {}),
            **({"calls": lay.calls} if lay and lay.calls > 2 else {}),  # applied 3+ times per forward
            # the mapped forward read none of its parameters (a called weight layer never counts:
            # its forward ran); no map, no claim
            "unread": bool(mm is not None and n in mm.unread and (lay is None or lay.kind == "other")),
            **_bn_stats(m), **_gate_stats(None if layers.sharded else m, lay),
        })
    sites = [] if mm is None else mm.activations
    return {
        "type": "meta", "version": VERSION, "run_id": run_id, "layers": entries,
        "activations": [{"name": s.name, "kind": s.kind, "family": s.family, "owner": s.owner,
                         "functional": s.functional, "is_output": s.is_output} for s in sites],
        "config": config,
    }


def initial_stats(m: Any) -> bool | None:
    """For a BatchNorm with running statistics: True while they are still the initial mean 0 /
    variance 1, False when they hold the data's; None for any other module (or a BatchNorm
    without running statistics: eval mode then uses batch statistics).

    Example:
        >>> from torch import nn
        >>> initial_stats(nn.BatchNorm1d(2)), initial_stats(nn.Linear(2, 2))
        (True, None)
    """
    from torch import nn

    mean, var = getattr(m, "running_mean", None), getattr(m, "running_var", None)
    if not isinstance(m, nn.modules.batchnorm._BatchNorm) or mean is None or var is None:
        return None
    return bool((mean == 0).all() and (var == 1).all())


def _bn_stats(m: Any) -> dict:
    """``{"initial_stats": bool}`` for a BatchNorm with running statistics (``initial_stats`` at
    attach: False for a model trained or loaded before watch), ``{}`` for any other module."""
    found = initial_stats(m)
    return {} if found is None else {"initial_stats": found}


def _gate_stats(m: Any, lay: Any) -> dict:
    """``{"gate_memory": {...}}`` for an LSTM/GRU (``gates.gate_memory``: the keep gate's mean bias
    at attach, its memory in steps, the sequence length the map saw), ``{}`` for any other module
    (or an FSDP shard, ``m`` None)."""
    found = None if m is None else gate_memory(m, lay)
    return {} if found is None else {"gate_memory": found}


class StepRecords:
    """Builds the step records of flushed rows; carries the last measured weight norms (for the
    update/weight ratio).

    Args:
        layers: the watched layers.
        site_names: the activation sites, in the sampler's order.

    Example:
        >>> from torch import nn
        >>> from graddoctor.measure.monitor.ring import Ring
        >>> layers = WatchedLayers(nn.Linear(2, 1), None)
        >>> ring = Ring(layers.params, layers.index, 1, capacity=2)
        >>> row = ring.append(1); _ = ring.write([torch.ones(1, 2), torch.ones(1)])
        >>> rec = StepRecords(layers, []).build(ring.rows, ring.flush_block(1, False), {}, {})[0]
        >>> rec["step"], round(rec["grad_norm"][""], 4), rec["nonfinite"]
        (1, 1.7321, {'': 0})
    """

    def __init__(self, layers: WatchedLayers, site_names: list[str]) -> None:
        self.layers = layers
        self.site_names = site_names
        self.columns = Columns(layers.n_layers)
        self._last_weight: dict[str, float] = {}
        #: BatchNorm layers: their ``training`` flag is read at each flush (``bn_eval``)
        self._batchnorms = [(n, m) for n, m in zip(layers.names, layers.modules)
                            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        #: gated recurrent layers: their keep-gate bias is read at each flush (``gate_bias``)
        self._gated = [(n, m) for n, m in zip(layers.names, layers.modules) if keep_gate(m) is not None]

    def build(self, rows: list[Row], block: torch.Tensor, acts: dict[int, torch.Tensor],
              out_grads: dict[int, torch.Tensor]) -> list[dict]:
        """The records of ``rows`` from their block (``Ring.flush_block``), activation statistics
        and output-gradient norms by step: ONE host transfer for all of them."""
        parts = [block.reshape(-1)] + [t.reshape(-1) for t in (*acts.values(), *out_grads.values())]
        flat = round_significant(torch.cat([p.to(block.dtype) for p in parts]), 8).cpu().tolist()
        width, off = self.columns.width, len(rows) * self.columns.width
        extra: list[dict[int, list[float]]] = [{}, {}]
        for found, by_step in zip(extra, (acts, out_grads)):
            for step, t in by_step.items():
                found[step] = flat[off: off + t.numel()]
                off += t.numel()
        recs = [self.record(row, self.columns.split(flat[i * width: (i + 1) * width]),
                            extra[0].get(row.step), extra[1].get(row.step)) for i, row in enumerate(rows)]
        if recs and self._batchnorms:  # the last record of the block: BatchNorms in eval mode now
            recs[-1]["bn_eval"] = [n for n, m in self._batchnorms if not m.training]
        if recs and self._gated and not self.layers.sharded:  # ... and the gates' biases now
            recs[-1]["gate_bias"] = gate_biases(*map(list, zip(*self._gated)))
        return recs

    def record(self, row: Row, v: dict[str, Any], act: list[float] | None, og: list[float] | None) -> dict:
        """One step record from its block row ``v`` (by column name) and sampled statistics."""
        names = self.layers.names
        rec: dict[str, Any] = {
            "type": "step", "step": row.step,
            "loss": v["loss"] if row.loss is not None else None,
            "skipped": bool(row.skipped or v["found_inf"] > 0),
            "lr": float(row.lrs[0]) if row.lrs and row.lrs[0] is not None else None,
        }
        if row.kept:  # the first .grad is the previous step's tensor plus one backward: no zero_grad() between
            rec["grad_kept"] = True
        if len(row.lrs) > 1:  # several param groups: each one's rate (``lr`` is the first's)
            rec["lrs"] = [float(x) if x is not None else None for x in row.lrs]
        if row.grads:
            grad = rec["grad_norm"] = dict(zip(names, v["grad_norm"]))
            if min(v["present"], default=1.0) <= 0:  # layers without a gradient this step: null
                for name, present in zip(names, v["present"]):
                    if present <= 0:
                        grad[name] = None
            rec["nonfinite"] = dict(zip(names, map(int, v["nonfinite"])))
        if row.weight_sq is not None:  # on measured steps only; read_run / records() carry it forward
            self._last_weight = dict(zip(names, v["weight_norm"]))
            rec["weight_norm"] = dict(self._last_weight)
        if row.update_sq is not None:
            measured = self.layers.train_layers if row.update_layers is None else row.update_layers
            upd = {names[i]: v["update_norm"][i] for i in measured}
            w = self._last_weight
            rec["update_norm"] = upd
            rec["update_ratio"] = {n: (u / w[n] if w.get(n) else (math.inf if u > 0 else 0.0))
                                   for n, u in upd.items()}
        if act is not None:
            rec["act"] = self._activations(act)
        if og is not None:
            rec["out_grad_norm"] = {n: og[i] for i, n in enumerate(names) if self.layers.modules[i] is not None}
        return rec

    def _activations(self, act: list[float]) -> dict[str, dict[str, float]]:
        """Per site seen in the sampled forward: its statistics (``ActivationSampler.stop``)."""
        k, out = ROW_WIDTH, {}
        for j, site in enumerate(self.site_names):
            row = act[j * k: (j + 1) * k]
            stats = dict(zip(STAT_NAMES, row))
            if stats["seen"] <= 0:
                continue
            out[site] = {name: stats[name] for name in _ACT_STATS}
            if not math.isnan(stats["dead_frac"]):
                out[site]["dead_frac"] = stats["dead_frac"]
            lo, hi = row[len(STAT_NAMES)], row[len(STAT_NAMES) + 1]
            out[site]["hist"] = {"lo": lo, "hi": hi, "counts": [int(c) for c in row[-HIST_BINS:]]}
        return out


__all__ = ["initial_stats", "StepRecords", "meta_record"]
