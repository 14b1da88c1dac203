"""Bundle: a dataset as train/test tensors plus what a model needs to know about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from graddoctor.errors import InputError


@dataclass
class Bundle:
    """Train/test tensors of one dataset.

    Attributes:
        name: registry name ("digits", ...).
        x_train, y_train, x_test, y_test: tensors (inputs float32; class labels int64,
            regression targets float32).
        task: "classification", "regression" or "sequence-classification" (a label per step).
        num_classes: number of classes (None for regression).
        input_shape: shape of one input, e.g. (64,) or (1, 8, 8) or (T, 2).
        info: dataset facts (source, scaling, baselines such as the constant-prediction MSE).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str = "classification"
    num_classes: int | None = None
    input_shape: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def loaders(self, batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                ) -> tuple[DataLoader, DataLoader]:
        """(train, test) DataLoaders; the train order is deterministic under ``seed``
        (default: the bundle's seed). The test loader never shuffles.

        Example:
            >>> from graddoctor import data
            >>> train, test = data.load("adding", T=10, n_train=100, n_test=10).loaders(32)
            >>> next(iter(train))[0].shape
            torch.Size([32, 10, 2])
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size={batch_size!r} must be an integer >= 1")
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        train = DataLoader(TensorDataset(self.x_train, self.y_train), batch_size=batch_size,
                           shuffle=shuffle, generator=gen)
        test = DataLoader(TensorDataset(self.x_test, self.y_test), batch_size=batch_size)
        return train, test

    def __repr__(self) -> str:
        return (f"Bundle({self.name}: train {tuple(self.x_train.shape)}, test {tuple(self.x_test.shape)}, "
                f"{self.task}, classes={self.num_classes})")


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with each class split in the same proportion, shuffled under ``seed``.

    Example:
        >>> tr, te = stratified_split(np.array([0, 0, 1, 1]), 0.5, seed=0)
        >>> sorted(np.array([0, 0, 1, 1])[te].tolist())
        [0, 1]
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        k = int(round(len(idx) * test_fraction))
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
