"""Keyword checks for the public entry points (``gd.watch``, the Lightning and HF callbacks): a
misspelt option is one ``InputError`` line naming the close valid ones, not a ``TypeError`` from
deep inside.

Example:
    >>> class W:
    ...     def __init__(self, model, *, flush_every: int = 1) -> None: ...
    >>> sorted(keywords(W))
    ['flush_every', 'model']
    >>> refuse("gd.watch", "flushevery", keywords(W), set())
    Traceback (most recent call last):
    graddoctor.errors.InputError: gd.watch: unknown argument 'flushevery' (did you mean 'flush_every'?)
"""

from __future__ import annotations

import difflib
import inspect
from typing import NoReturn

from graddoctor.errors import InputError


def keywords(cls: type) -> set[str]:
    """The keyword arguments ``cls(...)`` takes: its ``__init__``'s and, through ``**kwargs``, its bases'."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def refuse(owner: str, name: str, valid: set[str], autofix_only: set[str]) -> NoReturn:
    """Raise the one-line ``InputError`` for option ``name`` of ``owner``: an autofix option
    without ``autofix=True`` (in ``autofix_only``), else unknown with the close ``valid`` ones."""
    if name in autofix_only:
        raise InputError(f"{owner}: {name!r} is an autofix option - pass autofix=True too, or drop it")
    close = difflib.get_close_matches(name, sorted(valid), n=3)
    hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"options: {', '.join(sorted(valid))}"
    raise InputError(f"{owner}: unknown argument {name!r} ({hint})")


__all__ = ["keywords", "refuse"]
