"""Output paths checked before any work starts: a run that trains for minutes must not fail
at the end because its ``--out`` cannot be written.

Example:
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> writable_dir(os.path.join(d, "new", "deeper"), "--out") == os.path.join(d, "new", "deeper")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from graddoctor.errors import InputError


def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def writable_dir(path: str | os.PathLike, option: str) -> str:
    """``path`` unchanged when it is, or can be created as, a writable directory.

    Raises:
        InputError: (one line) it is a file, or neither it nor its nearest existing parent is a
            writable directory.
    """
    p = Path(path).expanduser()
    base = _nearest_existing(p)
    if p.exists() and not p.is_dir():
        raise InputError(f"{option} {str(path)!r} is a file, not a directory - pass a directory")
    if not base.is_dir():
        raise InputError(f"{option} {str(path)!r} cannot be created: {str(base)!r} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"{option} {str(path)!r} is not writable (no write permission on {str(base)!r}) "
                         "- pass a directory you can write to")
    return str(path)


def writable_file(path: str | os.PathLike, option: str) -> str:
    """``path`` unchanged when it is a file that can be written (created, or overwritten).

    Raises:
        InputError: (one line) a directory, or a location that cannot be written.

    Example:
        >>> writable_file("/", "--out")
        Traceback (most recent call last):
        graddoctor.errors.InputError: --out '/' is a directory - pass a file name, like report.html
    """
    p = Path(path).expanduser()
    if p.is_dir():
        raise InputError(f"{option} {str(path)!r} is a directory - pass a file name, like report.html")
    if p.exists() and not os.access(p, os.W_OK):
        raise InputError(f"{option} {str(path)!r} is not writable - pass a file you can write to")
    writable_dir(p.parent, option + " folder")
    return str(path)


__all__ = ["writable_dir", "writable_file"]
