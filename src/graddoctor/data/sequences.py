"""Synthetic sequence tasks from the LSTM literature: adding, temporal order, copy memory.

All are generated with ``numpy.random.default_rng(seed)`` (train and test from one
stream, so a seed fixes both), with the sequence length ``T`` configurable.
"""

from __future__ import annotations

import numpy as np
import torch

from graddoctor.data.bundle import Bundle
from graddoctor.errors import InputError


def _check(T: int, n_train: int, n_test: int, min_T: int) -> None:
    for what, v, lo in (("T", T, min_T), ("n_train", n_train, 1), ("n_test", n_test, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise InputError(f"{what}={v!r} must be an integer >= {lo}")


def _split(name: str, x: np.ndarray, y: np.ndarray, n_train: int, task: str,
           num_classes: int | None, info: dict, seed: int) -> Bundle:
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(y)
    return Bundle(name, xt[:n_train].clone(), yt[:n_train].clone(), xt[n_train:].clone(),
                  yt[n_train:].clone(), task, num_classes, tuple(xt.shape[1:]), info, seed)


def adding(seed: int = 0, T: int = 100, n_train: int = 10000, n_test: int = 1000,
           variant: str = "arjovsky") -> Bundle:
    """The adding problem: remember two marked numbers over ``T`` steps and output their sum.

    Inputs (T, 2): channel 0 the values, channel 1 the markers; targets float32 (n,).

    - ``"arjovsky"`` (Arjovsky et al. 2016): values U[0, 1], exactly two markers
      (one in each half), target = their sum. Predicting the constant 1 gives
      MSE = Var = 1/6 = 0.167, the baseline a model must beat.
    - ``"hochreiter"`` (Hochreiter & Schmidhuber 1997, Exp. 4): values U[-1, 1], marker
      1.0 at two distinct positions (first within the first 10 steps, second before
      T/2), -1 at the first and last steps when unmarked; target = 0.5 + (x1 + x2)/4
      (constant-prediction MSE 1/24 = 0.042).

    ``info["constant_mse"]``: test MSE of predicting the training mean.

    Example:
        >>> b = adding(T=50, n_train=2000, n_test=500)
        >>> b.x_train.shape, round(b.info["constant_mse"], 1)
        (torch.Size([2000, 50, 2]), 0.2)
    """
    if variant not in ("arjovsky", "hochreiter"):
        raise InputError(f"variant={variant!r} is not supported; use 'arjovsky' or 'hochreiter'")
    _check(T, n_train, n_test, 2 if variant == "arjovsky" else 10)
    rng = np.random.default_rng(seed)
    n, rows = n_train + n_test, np.arange(n_train + n_test)
    x = np.zeros((n, T, 2), dtype=np.float32)
    if variant == "arjovsky":
        x[:, :, 0] = rng.uniform(0.0, 1.0, (n, T))
        p1 = rng.integers(0, T // 2, n)
        p2 = rng.integers(T // 2, T, n)
    else:
        x[:, :, 0] = rng.uniform(-1.0, 1.0, (n, T))
        half = T // 2 - 1
        p1 = rng.integers(0, min(10, half), n)
        p2 = rng.integers(0, half - 1, n)
        p2 += p2 >= p1  # uniform over the other positions before T/2
        x[:, 0, 1] = x[:, -1, 1] = -1.0
    x[rows, p1, 1] = x[rows, p2, 1] = 1.0
    total = x[rows, p1, 0] + x[rows, p2, 0]
    y = (total if variant == "arjovsky" else 0.5 + total / 4).astype(np.float32)
    const = float(((y[n_train:] - y[:n_train].mean()) ** 2).mean())
    theory = 1 / 6 if variant == "arjovsky" else 1 / 24
    info = {"variant": variant, "T": T, "constant_mse": const, "constant_mse_theory": theory}
    return _split("adding", x, y, n_train, "regression", None, info, seed)


#: temporal order symbols (one-hot channels): distractors a-d, the two signals X/Y, begin/end
SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")


def temporal_order(seed: int = 0, T: int = 100, n_train: int = 10000, n_test: int = 1000
                   ) -> Bundle:
    """Temporal order (Hochreiter & Schmidhuber 1997, Exp. 6a): 4 classes.

    A sequence of ``T`` one-hot symbols (8 channels, see ``SYMBOLS``) starts with B, ends
    with E, is filled with random distractors a-d, and holds X or Y at two positions
    t1 in [0.1T, 0.2T] and t2 in [0.5T, 0.6T] (the paper's [10, 20] and [50, 60] at T=100,
    where its lengths vary in 100..110; here T is fixed so sequences batch). The class is
    the order: XX=0, XY=1, YX=2, YY=3. Classes are exactly balanced (n % 4 aside).

    Example:
        >>> b = temporal_order(T=20, n_train=400, n_test=40)
        >>> b.x_train.shape, b.num_classes, b.y_train.bincount().tolist()
        (torch.Size([400, 20, 8]), 4, [100, 100, 100, 100])
    """
    _check(T, n_train, n_test, 10)
    rng = np.random.default_rng(seed)
    n, rows = n_train + n_test, np.arange(n_train + n_test)
    sym = rng.integers(0, 4, (n, T))
    sym[:, 0], sym[:, -1] = 6, 7
    y = np.concatenate([rng.permutation(np.arange(n_train) % 4),
                        rng.permutation(np.arange(n_test) % 4)]).astype(np.int64)
    t1 = rng.integers(max(1, round(0.1 * T)), round(0.2 * T) + 1, n)
    t2 = rng.integers(round(0.5 * T), min(T - 2, round(0.6 * T)) + 1, n)
    sym[rows, t1] = 4 + y // 2
    sym[rows, t2] = 4 + y % 2
    x = np.eye(len(SYMBOLS), dtype=np.float32)[sym]
    return _split("temporal-order", x, y, n_train, "classification", 4,
                  {"T": T, "symbols": SYMBOLS, "chance_accuracy": 0.25}, seed)


def copy_memory(seed: int = 0, T: int = 100, n_train: int = 5000, n_test: int = 500,
                copy_len: int = 10) -> Bundle:
    """Copy memory (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016 setup).

    Alphabet: 0 blank, 1-8 symbols, 9 delimiter. Input (T + 2*copy_len steps, one-hot 10):
    ``copy_len`` random symbols, ``T - 1`` blanks, the delimiter, ``copy_len`` blanks.
    Target (int64 per step): blanks, then the symbols in the last ``copy_len`` steps.
    Task "sequence-classification" with 9 classes (0-8): build the model with
    ``sequence_output=True``. ``info["baseline_ce"]`` = copy_len*ln(8)/(T + 2*copy_len),
    the cross-entropy of the memoryless strategy (blanks, then a uniform guess).

    Example:
        >>> b = copy_memory(T=10, n_train=8, n_test=2)
        >>> b.x_train.shape, b.y_train.shape
        (torch.Size([8, 30, 10]), torch.Size([8, 30]))
    """
    _check(T, n_train, n_test, 1)
    if isinstance(copy_len, bool) or not isinstance(copy_len, int) or copy_len < 1:
        raise InputError(f"copy_len={copy_len!r} must be an integer >= 1")
    rng = np.random.default_rng(seed)
    n, L = n_train + n_test, T + 2 * copy_len
    seq = rng.integers(1, 9, (n, copy_len))
    sym = np.zeros((n, L), dtype=np.int64)
    sym[:, :copy_len] = seq
    sym[:, T + copy_len - 1] = 9
    y = np.zeros((n, L), dtype=np.int64)
    y[:, -copy_len:] = seq
    x = np.eye(10, dtype=np.float32)[sym]
    info = {"T": T, "copy_len": copy_len, "baseline_ce": copy_len * np.log(8) / L}
    return _split("copy", x, y, n_train, "sequence-classification", 9, info, seed)
