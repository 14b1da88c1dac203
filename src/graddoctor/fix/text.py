"""Small text helpers for what ``repair`` prints.

Example:
    >>> short_list(["a", "b"])
    'a, b'
"""

from __future__ import annotations


def short_list(names: list[str], keep: int = 4) -> str:
    """The first ``keep`` names, comma-separated, then how many more (the root module as ``<model>``).

    Args:
        names: module or site names.
        keep: how many to show.

    Returns:
        One line of text.

    Example:
        >>> short_list(["", "0", "1", "2", "3", "4"])
        '<model>, 0, 1, 2, ... (+2)'
    """
    names = [n or "<model>" for n in names]
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", ... (+{len(names) - keep})"


__all__ = ["short_list"]
