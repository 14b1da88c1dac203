"""Shard-aware reductions for watch: single process, DDP, FSDP1 and FSDP2/DTensor.

- single process: nothing to do.
- "replicated" (DDP, or any multi-process run whose parameters are whole on
  every rank): gradients are identical on all ranks after DDP's all-reduce, so
  the statistics are too; only the loss differs (each rank's own batch): rank 0
  records its own, and watch runs NO collective (a rank that raised, or joined
  early under ``DDP.join()`` with uneven inputs, made a flush all-reduce that the
  other ranks never matched: gloo aborted the run).
- "sharded" (FSDP1 with ``use_orig_params=True``, FSDP2 ``fully_shard`` /
  DTensor parameters): each rank holds a slice of every parameter, so a
  per-layer norm is ``sqrt(all_reduce_sum(local sum of squares))``.

Sharded runs keep *squared* norms in the device ring and call ``reduce_block``
once per flush: ONE ``all_reduce(SUM)`` over the whole ``[steps, columns]``
block; then sharded columns stay summed and the rest are averaged over ranks
(the loss becomes the mean over ranks). Every rank must flush at the same
steps, which holds because all ranks step in lockstep (a rank whose training
raised skips its last flush, ``Monitor.detach``: gloo aborted it, SIGABRT, and the user's
exception was never printed). Rank 0 writes the sinks.

FSDP1 without ``use_orig_params=True`` exposes only flattened parameters; watch
then reports one "layer" per FSDP unit (named after the wrapped module).

Example:
    >>> import torch
    >>> from torch import nn
    >>> mode(nn.Linear(2, 2))
    'single'
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

_WRAPPER_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_dtensor(t: torch.Tensor) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "to_local")


def local(t: torch.Tensor) -> torch.Tensor:
    """The rank-local part of a tensor (a DTensor's local shard, else the tensor itself)."""
    return t.to_local() if is_dtensor(t) else t


def _is_fsdp1(m: nn.Module) -> bool:
    return type(m).__name__ == "FullyShardedDataParallel"


def mode(model: nn.Module) -> str:
    """"single", "replicated" or "sharded" for ``model`` in the current process group."""
    _, ws = world()
    if ws == 1:
        return "single"
    if any(_is_fsdp1(m) for m in model.modules()) or any(is_dtensor(p) for p in model.parameters()):
        return "sharded"
    return "replicated"


def unwrap(model: nn.Module) -> nn.Module:
    """The module to map and hook: DDP's and ``nn.DataParallel``'s ``.module``,
    ``torch.compile``'s ``_orig_mod``.

    FSDP1 roots are kept (their forward gathers the shards); see ``clean_name``.

    Example:
        >>> from torch import nn
        >>> net = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(net)) is net
        True
    """
    while True:
        if isinstance(model, nn.DataParallel) or (
                type(model).__name__ == "DistributedDataParallel" and hasattr(model, "module")):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_name(name: str) -> str:
    """A module name without FSDP/checkpoint/compile wrapper parts.

    Example:
        >>> clean_name("_fsdp_wrapped_module.layers.0._fsdp_wrapped_module.fc")
        'layers.0.fc'
    """
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    for tail in _WRAPPER_PARTS:
        if name + "." == tail:
            return ""
        name = name.removesuffix("." + tail[:-1])
    return name


def reduce_block(block: torch.Tensor, summed: torch.Tensor, how: str) -> torch.Tensor:
    """All-reduce a ``[rows, cols]`` statistics block in ONE collective.

    Args:
        block: the block (float32), same shape and column layout on every rank.
        summed: bool ``[cols]``: columns that are sums over shards (kept summed); all other
            columns are averaged over ranks.
        how: "single" or "replicated" (returned unchanged: no collective), or "sharded".
    """
    if how != "sharded":  # single, or replicated: every rank holds the same statistics
        return block
    _, ws = world()
    out = block.contiguous().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return torch.where(summed.to(out.device), out, out / ws)


__all__ = ["clean_name", "is_dtensor", "local", "mode", "reduce_block", "unwrap", "world"]
