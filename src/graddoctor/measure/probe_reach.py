"""Trainable layers cut off from every output of the model: they never get a gradient.

The init probe differentiates one loss, read from one output (the model's own loss, the output
the target belongs to, or the largest output), so a layer that feeds only another output (an
auxiliary head, a pooler) is "off the path" of that loss, and legitimately so. A layer none of
whose trainable parameters the autograd graph of *any* output holds is another matter: a
``.detach()``, a ``torch.no_grad()`` block or a non-differentiable op (``argmax``) lies between
it and everything the model returns, or its result is thrown away, so no loss built from the
outputs trains it (a new-user trial: an encoder detached before its head read "no findings").

``cut_off`` walks the graph back from every output tensor once, collecting the parameters at its
leaves (graph nodes outlive a backward; only their saved tensors are freed). Parameters, not the
layer's output node, are looked for: an in-place op on a view of the output (HF Hubert's masking)
rebases that node out of the graph while the weights stay in it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> a, b, c = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    >>> x = torch.randn(3, 2)
    >>> with torch.no_grad():
    ...     hc = c(x)
    >>> out = a(b(x).detach()) + hc
    >>> cut_off({"a": list(a.parameters()), "b": list(b.parameters()), "c": list(c.parameters())}, [out])
    ['b', 'c']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch


def graph_leaves(outputs: Iterable[torch.Tensor]) -> set[int]:
    """ids of the tensors that require grad at the leaves of the autograd graphs of ``outputs``
    (a leaf output itself included).

    Example:
        >>> w = torch.ones(2, requires_grad=True)
        >>> id(w) in graph_leaves([(w * 3).sum()])
        True
    """
    ts = [t for t in outputs if isinstance(t, torch.Tensor) and t.requires_grad]
    found = {id(t) for t in ts if t.grad_fn is None}
    stack = [t.grad_fn for t in ts if t.grad_fn is not None]
    seen: dict[int, object] = {}  # holds the nodes, so no id is reused while this runs
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        var = getattr(node, "variable", None)  # AccumulateGrad: the leaf tensor it feeds
        if isinstance(var, torch.Tensor):
            found.add(id(var))
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None and id(nxt) not in seen)
    return found


def cut_off(params: Mapping[str, Sequence[torch.Tensor]], outputs: Iterable[torch.Tensor]) -> list[str]:
    """The layers none of whose trainable parameters any of ``outputs`` depends on through autograd.

    Args:
        params: layer name -> its trainable parameters (layers without any are never listed).
        outputs: every tensor the model returned.

    Returns:
        The names, in the order of ``params``.
    """
    params = {n: ps for n, ps in params.items() if ps}
    if not params:
        return []
    leaves = graph_leaves(outputs)
    return [n for n, ps in params.items() if not any(id(p) in leaves for p in ps)]


__all__ = ["cut_off", "graph_leaves"]
