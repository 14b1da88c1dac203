"""The remedy registry: remedy id -> one function with one signature.

Every remedy is ``fn(model, layers, ctx) -> (new_model, Change)``: ``layers`` restricts it
to these module names (None: wherever it applies; remedies that do not act on modules, like
clipping and advice, ignore it), ``ctx`` (``RemedyContext``) carries everything else. A
remedy deep-copies the model unless ``ctx.inplace`` and never touches its input otherwise.
Each remedy module registers its ids with ``@register(...)``; importing
``graddoctor.fix.remedies`` imports them all.

Example:
    >>> from torch import nn
    >>> from graddoctor.fix.remedies.base import Change
    >>> @register("my-fix", family="custom", summary="does nothing to {id}")
    ... def my_fix(model, layers, ctx):
    ...     return model, Change(ctx.remedy, [], "nothing to do", "advice")
    >>> get("my-fix").summary, apply("my-fix", nn.Linear(2, 2))[1].kind
    ('does nothing to my-fix', 'advice')
    >>> del REMEDIES["my-fix"]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding


@dataclass
class RemedyContext:
    """What a remedy may use besides the model and the layers it targets.

    Args:
        remedy: the id the remedy runs as (one function may serve several ids).
        example_inputs: a batch (tensor, tuple or dict), or None.
        model_map: the ``ModelMap`` of the model on ``example_inputs`` when the caller has one;
            a remedy given one traces nothing.
        optimizer: the optimizer owning the model's parameters (clipping registers on it).
        findings: the findings the remedy answers (from the report).
        options: the remedy's own options (``value`` of a clip, ``block_size`` of a skip, ...).
        inplace: change the model itself instead of a deep copy.

    Returns:
        (plain data) read by the remedy; ``repair`` builds one per plan step.

    Raises:
        Nothing.

    Example:
        >>> RemedyContext("clip-norm", options={"value": 0.5}).options["value"]
        0.5
    """

    remedy: str
    example_inputs: Any = None
    model_map: ModelMap | None = None
    optimizer: Any = None
    findings: list[Finding] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    inplace: bool = False


RemedyFn = Callable[[nn.Module, "list[str] | None", RemedyContext], tuple[nn.Module, Change]]


@dataclass(frozen=True)
class Remedy:
    """A registry entry.

    Args:
        id: the remedy id (see ``graddoctor.codes.REMEDY_IDS``).
        fn: ``fn(model, layers, ctx) -> (new_model, Change)``.
        family: "activation" | "init" | "norm" | "skip" | "clip" | "advice" (or your own).
        summary: one line: what it does.
        needs_inputs: it cannot run without example inputs (shapes, batch statistics).
        keeps_map: it changes no module and no data flow (re-init, hooks, advice), so a
            ``ModelMap`` of the model stays valid after it.
        options: the names ``ctx.options`` may hold.

    Returns:
        (plain data) ``REMEDIES[id]``; ``get(id)`` returns it.

    Raises:
        Nothing: ``register`` checks ids, ``apply`` checks options.

    Example:
        >>> get("rezero").family, get("rezero").needs_inputs, get("he-init").keeps_map
        ('skip', True, True)
    """

    id: str
    fn: RemedyFn
    family: str
    summary: str
    needs_inputs: bool = False
    keeps_map: bool = False
    options: tuple[str, ...] = ()


#: remedy id -> entry, filled by the remedy modules as they are imported
REMEDIES: dict[str, Remedy] = {}


def register(*ids: str, family: str, summary: str, needs_inputs: bool = False,
             keeps_map: bool = False, options: Iterable[str] = ()) -> Callable[[RemedyFn], RemedyFn]:
    """Decorator: register ``fn(model, layers, ctx)`` under each of ``ids``.

    Args:
        ids: remedy ids the function serves (it reads ``ctx.remedy`` to tell them apart).
        family, needs_inputs, keeps_map, options: as in ``Remedy``.
        summary: one line; ``{id}`` is replaced by each id.

    Returns:
        The decorator; it returns ``fn`` unchanged.

    Raises:
        ValueError: an id is registered twice.

    Example:
        >>> @register("noop-a", "noop-b", family="custom", summary="{id} does nothing")
        ... def noop(model, layers, ctx):
        ...     return model, Change(ctx.remedy, [], "nothing", "advice")
        >>> get("noop-b").summary
        'noop-b does nothing'
        >>> for rid in ("noop-a", "noop-b"): del REMEDIES[rid]
    """

    def deco(fn: RemedyFn) -> RemedyFn:
        for rid in ids:
            if rid in REMEDIES:
                raise ValueError(f"remedy {rid!r} is registered twice")
            REMEDIES[rid] = Remedy(rid, fn, family, summary.format(id=rid), needs_inputs,
                                   keeps_map, tuple(options))
        return fn

    return deco


def get(rid: str) -> Remedy:
    """The registry entry for ``rid``.

    Args:
        rid: a remedy id.

    Returns:
        Its ``Remedy``.

    Raises:
        InputError: unknown id (the message lists the known ones).

    Example:
        >>> get("he-init").family
        'init'
    """
    try:
        return REMEDIES[rid]
    except KeyError:
        raise InputError(f"unknown remedy {rid!r}; known: {', '.join(REMEDIES)}") from None


def apply(rid: str, model: nn.Module, example_inputs: Any = None, *, layers: list[str] | None = None,
          inplace: bool = False, optimizer: Any = None, mmap: ModelMap | None = None,
          findings: Iterable[Finding] = (), **options: Any) -> tuple[nn.Module, Change]:
    """Run remedy ``rid`` on ``model``.

    Args:
        rid: a remedy id.
        model: the model (deep-copied unless ``inplace``).
        example_inputs, inplace, optimizer, findings: as in ``RemedyContext``.
        layers: restrict the remedy to these module names.
        mmap: the ``ModelMap`` of ``model`` on ``example_inputs``, if already built (saves a trace).
        options: the remedy's own options (``Remedy.options``).

    Returns:
        ``(new_model, change)``.

    Raises:
        InputError: unknown remedy id or option.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 1))
        >>> new, change = apply("relu", net, torch.randn(2, 4))
        >>> type(new[1]).__name__, type(net[1]).__name__, change.remedy
        ('ReLU', 'Sigmoid', 'relu')
    """
    entry = get(rid)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        takes = ", ".join(entry.options) or "no options"
        raise InputError(f"remedy {rid!r} takes {takes}; got {', '.join(unknown)}")
    ctx = RemedyContext(rid, example_inputs, mmap, optimizer, list(findings), options, inplace)
    return entry.fn(model, layers, ctx)


__all__ = ["REMEDIES", "Remedy", "RemedyContext", "RemedyFn", "apply", "get", "register"]
