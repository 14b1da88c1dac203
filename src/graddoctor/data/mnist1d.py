"""MNIST-1D (Greydanus 2020): 5000 procedurally generated length-40 signals, made locally."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from graddoctor.data.bundle import Bundle
from graddoctor.errors import InputError


@functools.lru_cache(maxsize=4)
def _generate(dataset_seed: int) -> tuple[np.ndarray, ...]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError as e:  # pragma: no cover - depends on the install
        raise InputError("the mnist1d dataset needs the mnist1d package: "
                         "pip install 'graddoctor[data]'") from e
    args = get_dataset_args()
    args.seed = dataset_seed
    py_state, np_state = random.getstate(), np.random.get_state()
    try:  # make_dataset seeds the global RNGs: give them back as they were
        d = make_dataset(args)  # generated here; never get_dataset (that one downloads)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def mnist1d(seed: int = 0, flat: bool = True, dataset_seed: int = 42) -> Bundle:
    """MNIST-1D generated with ``mnist1d.data.make_dataset(get_dataset_args())``: 4000/1000.

    Ten 1-D digit templates, padded, translated, scaled, sheared and noised to length 40;
    the whole set is standardised (mean 0, std 1) by mnist1d itself. ``dataset_seed=42``
    (mnist1d's default) gives the standard dataset of the paper; ``seed`` only sets the
    default shuffling of :meth:`Bundle.loaders`. Inputs (40,) or, ``flat=False``, (1, 40).
    Generation takes about a second and is cached per process.

    Example:
        >>> b = mnist1d()
        >>> b.x_train.shape, b.x_test.shape
        (torch.Size([4000, 40]), torch.Size([1000, 40]))
    """
    x, y, xt, yt = _generate(int(dataset_seed))
    shape = (40,) if flat else (1, 40)

    def tx(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.float32).reshape(-1, *shape)

    def ty(a: np.ndarray) -> torch.Tensor:
        return torch.tensor(a, dtype=torch.int64)

    return Bundle("mnist1d", tx(x), ty(y), tx(xt), ty(yt), "classification", 10, shape,
                  {"source": "mnist1d.data.make_dataset(get_dataset_args())",
                   "dataset_seed": dataset_seed}, seed)
