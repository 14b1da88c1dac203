"""Removing hooks safely from inside a hook.

When a module's ``forward`` raises, torch runs the ``always_call`` forward hooks while it
iterates the module's hook dict; removing a hook from that dict then raises ``RuntimeError:
OrderedDict mutated during iteration`` in place of the user's exception. ``HandleBin.release``
removes handles at once, except while an exception is in flight: then it keeps them (the hooks
check that they are still live and do nothing) and ``empty()`` removes them at the next safe
point (the next forward pre-hook, the next step, ``detach``).

``eager_only(hook)`` makes a hook a no-op while Dynamo traces it (``torch.compile``, also with
``fullgraph=True``, where a ``torch.compiler.disable``d hook raises in the user's forward): a
compiled forward then runs none of graddoctor's hook bodies, and ``on_trace`` (a side effect
Dynamo replays) says it was traced.

``own_forward()`` marks the forwards graddoctor runs itself (the ``ModelMap`` trace of a
watcher's first forward): the watch hooks of every watcher ignore them, so a second watcher
on the same model neither samples nor unhooks itself inside the first one's trace.

Example:
    >>> import torch
    >>> net = torch.nn.Linear(1, 1)
    >>> bin_ = HandleBin()
    >>> bin_.release([net.register_forward_hook(lambda *a: None)])
    >>> len(net._forward_hooks), bin_.stale
    (0, [])
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

_OWN = threading.local()  # depth of graddoctor's own forwards running in this thread


def in_exception() -> bool:
    """True while an exception is being handled (torch's ``always_call`` hook path)."""
    return sys.exc_info()[0] is not None


def in_own_forward() -> bool:
    """True inside ``own_forward()`` (in this thread): the forward is graddoctor's, not training's."""
    return getattr(_OWN, "depth", 0) > 0


@contextmanager
def own_forward() -> Iterator[None]:
    """Mark the forwards run inside as graddoctor's own (nestable)."""
    _OWN.depth = getattr(_OWN, "depth", 0) + 1
    try:
        yield
    finally:
        _OWN.depth -= 1


def eager_only(hook: Callable[..., Any], on_trace: Callable[[], None] | None = None) -> Callable[..., Any]:
    """``hook`` for eager forwards only: while Dynamo traces it, it returns None (calling
    ``on_trace``) without reading any state, so it adds no guard, recompile or graph break.

    Example:
        >>> net = torch.nn.Linear(1, 1)
        >>> seen = []
        >>> _ = net.register_forward_hook(eager_only(lambda m, a, o: seen.append(1)))
        >>> _ = net(torch.ones(1, 1)); seen
        [1]
    """
    @functools.wraps(hook)
    def hook_when_eager(*args: Any, **kwargs: Any) -> Any:
        if torch.compiler.is_compiling():
            if on_trace is not None:
                on_trace()
            return None
        return hook(*args, **kwargs)
    return hook_when_eager


class HandleBin:
    """Hook handles to remove now, or at the next safe point while an exception is in flight."""

    def __init__(self) -> None:
        self.stale: list[Any] = []

    def release(self, handles: list[Any]) -> None:
        """Remove ``handles`` (now, or later when called while an exception is handled)."""
        if in_exception():
            self.stale.extend(handles)
        else:
            for h in handles:
                h.remove()

    def empty(self) -> None:
        """Remove the handles kept back by ``release``."""
        stale, self.stale = self.stale, []
        for h in stale:
            h.remove()


__all__ = ["HandleBin", "eager_only", "in_exception", "in_own_forward", "own_forward"]
