"""Zero-derivative ops on an autograd graph (``torch.round``, ``torch.sign``, ``floor``, ``ceil``,
``trunc``): they pass no gradient, so the layers before them never train (read by check's
``no-gradient``: ``diagnose.checktime.zero_ops``).

Example:
    >>> import torch
    >>> x = torch.randn(3, requires_grad=True)
    >>> zero_derivative_ops((torch.round(x * 2) * x).sum().grad_fn)
    ['round']
"""

from __future__ import annotations

from typing import Any

#: autograd node names (without the trailing version digit) whose derivative is zero everywhere
ZERO_DERIVATIVE = {"RoundBackward": "round", "SignBackward": "sign", "SgnBackward": "sgn", "FloorBackward": "floor",
                   "CeilBackward": "ceil", "TruncBackward": "trunc"}
_MAX_NODES = 200_000  # a bound on the walk (graphs of very deep models)


def zero_derivative_ops(root: Any, cuts: set[Any] | None = None) -> list[str]:
    """The zero-derivative ops (``ZERO_DERIVATIVE``) in the autograd graph under ``root``, sorted;
    with ``cuts`` (``probe_scale.cut_nodes``), only those every backward path passes through: a
    ``sign`` inside a signed square root, or a ``round`` on a side path, blocks nothing."""
    found, seen, todo = set(), set(), [root]
    while todo and len(seen) < _MAX_NODES:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        name = type(node).__name__.rstrip("0123456789")
        if name in ZERO_DERIVATIVE and (cuts is None or node in cuts):
            found.add(ZERO_DERIVATIVE[name])
        todo.extend(n for n, _ in getattr(node, "next_functions", ()))
    return sorted(found)


__all__ = ["ZERO_DERIVATIVE", "zero_derivative_ops"]
