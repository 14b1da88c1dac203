"""scikit-learn's handwritten digits: 1797 real 8x8 images, shipped with scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
import torch

from graddoctor.data.bundle import Bundle, stratified_split
from graddoctor.errors import InputError


def digits(seed: int = 0, flat: bool = True, scale: str = "unit", test_fraction: float = 0.2
           ) -> Bundle:
    """The UCI optical digits as bundled by scikit-learn (``load_digits``), 10 classes.

    A stratified split (default 20% test: 1438 train / 359 test), shuffled under ``seed``.
    Pixels (0..16) are scaled to [0, 1] (``scale="unit"``) or standardised with the
    training set's global mean and std (``scale="standard"``). Inputs are flat (64,)
    or, with ``flat=False``, images (1, 8, 8).

    Example:
        >>> b = digits()
        >>> b.x_train.shape, b.x_test.shape, b.num_classes
        (torch.Size([1438, 64]), torch.Size([359, 64]), 10)
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError("the digits dataset needs scikit-learn: pip install 'graddoctor[data]'") from e
    if scale not in ("unit", "standard"):
        raise InputError(f"scale={scale!r} is not supported; use 'unit' or 'standard'")
    if not 0 < test_fraction < 1:
        raise InputError(f"test_fraction={test_fraction!r} must be between 0 and 1")
    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    if scale == "standard":
        mu, sd = x[tr].mean(), x[tr].std()
        x = (x - mu) / sd
    shape = (64,) if flat else (1, 8, 8)
    xs = torch.from_numpy(x).reshape(-1, *shape)
    ys = torch.from_numpy(y)
    return Bundle("digits", xs[tr].clone(), ys[tr].clone(), xs[te].clone(), ys[te].clone(),
                  "classification", 10, shape,
                  {"source": "sklearn.datasets.load_digits (UCI optical digits)", "scale": scale},
                  seed)
