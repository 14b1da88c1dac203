"""Data-flow tags: what the trace attaches to each tensor to follow layers to their activations.

A ``Tag`` rides on a floating-point tensor (as the attribute ``_graddoctor_tag``) and says how
many layers lie between the input and that tensor, which layers' outputs reached it with no
activation yet, and which activation sites it passed since the last layer. Every tagged tensor
is remembered weakly so that ``clear_tags`` removes every tag after the trace.

Example:
    >>> import torch
    >>> tagged = []
    >>> x = tag_inputs(torch.ones(2), tagged)
    >>> input_tag((x, 3)).hi, clear_tags(tagged), hasattr(x, TAG_ATTR)
    (0, None, False)
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

import torch
from torch.utils._pytree import tree_map

from graddoctor.inputs import leaves

TAG_ATTR = "_graddoctor_tag"
EMPTY: frozenset = frozenset()


@dataclass(frozen=True)
class Tag:
    """Where a tensor stands on the forward path.

    Args:
        lo: shortest layer count from the input.
        hi: longest layer count from the input.
        pending: layers whose output reached here with no activation yet.
        src: last weight layers (not norms) on the path.
        acts: activation sites applied since the last layer.
        wlo: shortest count of weight layers (norms not counted) from the input.
        whi: longest count of weight layers from the input.
        cap: the tensor is the previous one divided by this Python number (a soft cap's ``x / c``),
            None after any other op.
        up: bit i set when the data of the i-th layer (order of first call) flows into the tensor,
            also through ``.detach()`` and ``torch.no_grad()``.
        hom: bit i set when the tensor scales with the i-th layer's output (``graddoctor.modelmap.scale``).
        const: computed from buffers or parameters only, not from the model's input (the coordinate
            table of SwinV2's position-bias MLP).
    """

    lo: int
    hi: int
    pending: frozenset = EMPTY
    src: frozenset = EMPTY
    acts: frozenset = EMPTY
    wlo: int = 0
    whi: int = 0
    cap: float | None = None
    up: int = 0
    hom: int = 0
    const: bool = False


def tag_of(x: Any) -> Tag | None:
    """The tag of ``x``, None when ``x`` is no tagged tensor.

    Example:
        >>> tag_of(torch.ones(1)), tag_of(3)
        (None, None)
    """
    return getattr(x, TAG_ATTR, None) if isinstance(x, torch.Tensor) else None


def merge(tags: list[Tag]) -> Tag:
    """One tag for a tensor computed from several: the shortest (over the data's tags: a constant
    table's, SwinV2's position-bias MLP, is no path from the input) and longest counts, the union
    of the sets.

    Example:
        >>> t = merge([Tag(1, 1), Tag(3, 3)])
        >>> t.lo, t.hi
        (1, 3)
    """
    if len(tags) == 1:
        return tags[0]
    data = [t for t in tags if not t.const] or tags  # a constant table's path is no path from the input
    return Tag(
        min(t.lo for t in data), max(t.hi for t in tags),
        frozenset().union(*(t.pending for t in tags)),
        frozenset().union(*(t.src for t in tags)),
        frozenset().union(*(t.acts for t in tags)),
        min(t.wlo for t in data), max(t.whi for t in tags),
        up=reduce(or_, (t.up for t in tags), 0), hom=reduce(or_, (t.hom for t in tags), 0),
        const=all(t.const for t in tags),
    )


def input_tag(tree: Any) -> Tag | None:
    """The merged tag of the tagged tensors in ``tree``, None when none is tagged.

    Example:
        >>> input_tag([torch.ones(1), "x"]) is None
        True
    """
    if isinstance(tree, torch.Tensor):  # fast paths (every op of a trace): a tensor; (tensors, {})
        return getattr(tree, TAG_ATTR, None)
    if (isinstance(tree, tuple) and len(tree) == 2 and isinstance(tree[0], tuple) and tree[1] == {}
            and all(isinstance(a, torch.Tensor) for a in tree[0])):
        tags = [t for t in (getattr(a, TAG_ATTR, None) for a in tree[0]) if t is not None]
    else:
        tags = [t for t in map(tag_of, leaves(tree)) if t is not None]
    return merge(tags) if tags else None


def set_tag(tree: Any, tag: Tag, tagged: list[weakref.ref]) -> None:
    """Tag the floating-point tensors of ``tree``, remembering each one (weakly) in ``tagged``.

    Also buffers changed in place and tensors the model keeps are remembered, so that
    ``clear_tags`` finds them. A tensor that refuses the attribute stays untagged.

    Example:
        >>> tagged, x = [], torch.ones(1)
        >>> set_tag([x, torch.ones(1, dtype=torch.long)], Tag(1, 1), tagged)
        >>> tag_of(x).hi, len(tagged)
        (1, 1)
    """
    for x in ((tree,) if isinstance(tree, torch.Tensor) else leaves(tree)):
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            with contextlib.suppress(Exception):
                setattr(x, TAG_ATTR, tag)
                tagged.append(weakref.ref(x))


def clear_tags(tagged: list[weakref.ref]) -> None:
    """Remove the tag from every tensor in ``tagged`` still alive, and empty the list.

    Example:
        >>> tagged, x = [], torch.ones(1)
        >>> set_tag(x, Tag(0, 0), tagged); clear_tags(tagged)
        >>> hasattr(x, TAG_ATTR), tagged
        (False, [])
    """
    for ref in tagged:
        x = ref()
        if x is not None and hasattr(x, TAG_ATTR):
            with contextlib.suppress(Exception):
                delattr(x, TAG_ATTR)
    tagged.clear()


def tag_inputs(inputs: Any, tagged: list[weakref.ref]) -> Any:
    """Tagged copies of the floating-point inputs (depth 0); other leaves as they are.

    The user's tensors stay untouched: no attribute is set on them, and a model that works in
    place on its input changes the copy.

    Example:
        >>> x = torch.ones(2)
        >>> y = tag_inputs({"x": x}, [])["x"]
        >>> y is x, tag_of(y).lo, hasattr(x, TAG_ATTR)
        (False, 0, False)
    """

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            y = x.clone()
            setattr(y, TAG_ATTR, Tag(0, 0))
            tagged.append(weakref.ref(y))
            return y
        return x

    return tree_map(copy, inputs)


__all__ = ["EMPTY", "TAG_ATTR", "Tag", "clear_tags", "input_tag", "merge", "set_tag", "tag_inputs", "tag_of"]
