"""CIFAR-10 from a local folder of the standard python pickle batches (never downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from graddoctor.data.bundle import Bundle
from graddoctor.errors import InputError

FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)


def _folder(data_dir: str | Path | None) -> Path:
    hint = ("cifar10 needs data_dir= a folder with the python batches "
            f"{', '.join(FILES)} (cifar-10-python.tar.gz extracted); graddoctor never downloads")
    if data_dir is None:
        raise InputError(hint)
    root = Path(data_dir).expanduser()
    for cand in (root, root / "cifar-10-batches-py"):
        if all((cand / f).is_file() for f in FILES):
            return cand
    missing = [f for f in FILES if not (root / f).is_file()]
    raise InputError(f"{hint}; missing in {root}: {', '.join(missing)}")


#: the only globals a CIFAR-10 batch may name: numpy arrays, scalars and dtypes (and the
#: ``_codecs.encode`` protocol 2 uses for bytes); anything else is refused, never imported
_ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class _BatchUnpickler(pickle.Unpickler):
    """A pickle reader that builds numpy arrays, bytes, lists and dicts only."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}")
        if module.startswith("numpy.core."):  # numpy 2 moved numpy.core to numpy._core
            module = "numpy._core." + module[len("numpy.core."):] if hasattr(np, "_core") else module
        elif module.startswith("numpy._core.") and not hasattr(np, "_core"):
            module = "numpy.core." + module[len("numpy._core."):]
        return super().find_class(module, name)


def load_batch(path: str | Path) -> dict:
    """One CIFAR-10 python batch, read with a restricted unpickler (numpy arrays, bytes, lists,
    dicts only: a file that names any other global is refused, nothing from it runs).

    Raises:
        InputError: (one line) not a CIFAR-10 batch, or a pickle that asks for anything else.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "b")
        >>> with open(p, "wb") as f:
        ...     pickle.dump({b"data": np.zeros((1, 3072), np.uint8), b"labels": [3]}, f)
        >>> load_batch(p)[b"labels"]
        [3]
    """
    try:
        with open(path, "rb") as fh:
            d = _BatchUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise InputError(f"{path} is not a CIFAR-10 python batch ({type(e).__name__}: {e}) - use the "
                         "batches of cifar-10-python.tar.gz") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise InputError(f"{path} is not a CIFAR-10 python batch (no b'data'/b'labels') - use the "
                         "batches of cifar-10-python.tar.gz")
    return d


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = load_batch(path)
    try:
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return x, np.asarray(d[b"labels"], dtype=np.int64)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: a CIFAR-10 batch holds b'data' [N, 3072] uint8 and N b'labels' "
                         f"({e})") from None


def cifar10(seed: int = 0, data_dir: str | Path | None = None, n_train: int | None = None,
            n_test: int | None = None, normalize: bool = True) -> Bundle:
    """CIFAR-10 (50000/10000 32x32 colour images, 10 classes) from ``data_dir``.

    ``data_dir`` holds ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (or is the
    parent of ``cifar-10-batches-py``). Pixels go to [0, 1], then (``normalize``) to
    zero mean / unit std per channel using training-set statistics. ``n_train``/``n_test``
    take a random subset under ``seed`` (for 2-core runs). A missing folder is a
    one-line InputError naming the expected files.

    Example:
        >>> cifar10(data_dir=None)
        Traceback (most recent call last):
        graddoctor.errors.InputError: cifar10 needs data_dir= a folder ...
    """
    folder = _folder(data_dir)
    parts = [_read(folder / f) for f in FILES[:5]]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    xt, yt = _read(folder / FILES[5])
    rng = np.random.default_rng(seed)
    if n_train is not None:
        keep = rng.permutation(len(y))[:n_train]
        x, y = x[keep], y[keep]
    if n_test is not None:
        keep = rng.permutation(len(yt))[:n_test]
        xt, yt = xt[keep], yt[keep]
    xf = torch.from_numpy(x).float() / 255
    xtf = torch.from_numpy(xt).float() / 255
    if normalize:
        mu = xf.mean((0, 2, 3), keepdim=True)
        sd = xf.std((0, 2, 3), keepdim=True)
        xf, xtf = (xf - mu) / sd, (xtf - mu) / sd
    return Bundle("cifar10", xf, torch.from_numpy(y), xtf, torch.from_numpy(yt), "classification",
                  10, (3, 32, 32), {"source": str(folder), "normalize": normalize}, seed)
