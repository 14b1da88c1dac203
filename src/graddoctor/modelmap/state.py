"""The model state a traced forward must leave as it found it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Dropout(0.5).eval()
    >>> with restored_state(net):
    ...     _ = net.train()
    >>> net.training
    False
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def restored_state(model: nn.Module) -> Iterator[None]:
    """Restore train/eval flags, buffers and the RNG state after the block.

    Args:
        model: the module whose flags and buffers (BatchNorm running statistics, ...) to keep.

    Returns:
        A context manager; on exit (also on an exception) every module's ``training`` flag,
        every buffer of unchanged shape, and the CPU (and initialised CUDA) RNG state are
        as they were on entry.

    Example:
        >>> net = nn.BatchNorm1d(2)
        >>> with restored_state(net):
        ...     _ = net(torch.randn(4, 2))
        >>> net.running_mean.tolist()
        [0.0, 0.0]
    """
    modes = {m: m.training for m in model.modules()}
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for m, t in modes.items():
            m.training = t
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers and b.shape == buffers[n].shape:
                    b.copy_(buffers[n])
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


@contextlib.contextmanager
def mha_fastpath_disabled() -> Iterator[None]:
    """Turn off torch's fused ``MultiheadAttention`` fast path inside the block.

    The fused path skips the submodules' forwards, so a trace of ``nn.TransformerEncoder``
    would miss them. The previous setting comes back on exit; a torch without the switch
    runs the block unchanged.

    Returns:
        A context manager.

    Example:
        >>> with mha_fastpath_disabled():
        ...     torch.backends.mha.get_fastpath_enabled()
        False
    """
    backend = getattr(torch.backends, "mha", None)
    if backend is None or not hasattr(backend, "set_fastpath_enabled"):
        yield
        return
    before = backend.get_fastpath_enabled()
    backend.set_fastpath_enabled(False)
    try:
        yield
    finally:
        backend.set_fastpath_enabled(before)


__all__ = ["mha_fastpath_disabled", "restored_state"]
