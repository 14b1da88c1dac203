"""Embedded datasets: shapes, dtypes, balance, task semantics, determinism, no network."""

from __future__ import annotations

import importlib
import pickle
import random
import socket

import numpy as np
import pytest
import torch

from graddoctor import data
from graddoctor.errors import InputError

mnist1d_module = importlib.import_module("graddoctor.data.mnist1d")
CIFAR_FILES = importlib.import_module("graddoctor.data.cifar10").FILES

SMALL = {  # fast options per dataset (cifar10 is tested with fake batches below)
    "digits": {},
    "mnist1d": {},
    "adding": {"T": 50, "n_train": 400, "n_test": 100},
    "temporal-order": {"T": 40, "n_train": 400, "n_test": 100},
    "copy": {"T": 20, "n_train": 64, "n_test": 16},
}


def test_names():
    assert data.names() == ["adding", "cifar10", "copy", "digits", "mnist1d", "temporal-order"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_dtypes_and_shapes_agree(name):
    b = data.load(name, **SMALL[name])
    assert b.name == name
    assert b.x_train.dtype == b.x_test.dtype == torch.float32
    assert tuple(b.x_train.shape[1:]) == tuple(b.x_test.shape[1:]) == b.input_shape
    assert len(b.x_train) == len(b.y_train) and len(b.x_test) == len(b.y_test)
    if b.task == "regression":
        assert b.y_train.dtype == torch.float32 and b.num_classes is None
    else:
        assert b.y_train.dtype == torch.int64
        assert int(b.y_train.min()) >= 0 and int(b.y_train.max()) < b.num_classes
    assert torch.isfinite(b.x_train).all()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_deterministic_under_seed(name):
    a, b = data.load(name, seed=3, **SMALL[name]), data.load(name, seed=3, **SMALL[name])
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    ta, tb = a.loaders(32, seed=5)[0], b.loaders(32, seed=5)[0]
    assert torch.equal(next(iter(ta))[1], next(iter(tb))[1])
    if name != "mnist1d":  # mnist1d is the standard dataset: the seed only orders the loader
        c = data.load(name, seed=4, **SMALL[name])
        assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize("name", ["adding", "temporal-order", "copy"])
@pytest.mark.parametrize("T", [10, 1000])
def test_sequence_length_is_configurable(name, T):
    b = data.load(name, T=T, n_train=4, n_test=4)
    extra = 20 if name == "copy" else 0
    assert b.x_train.shape[1] == b.input_shape[0] == T + extra


def test_digits_real_data_split_and_scaling():
    b = data.load("digits")
    assert b.x_train.shape == (1438, 64) and b.x_test.shape == (359, 64)
    assert float(b.x_train.min()) == 0.0 and float(b.x_train.max()) == 1.0
    counts = torch.bincount(b.y_test, minlength=10)
    totals = counts + torch.bincount(b.y_train, minlength=10)
    assert ((counts.float() - 0.2 * totals.float()).abs() <= 0.5).all()  # stratified
    img = data.load("digits", flat=False)
    assert img.x_train.shape[1:] == (1, 8, 8)
    assert torch.equal(img.x_train.flatten(1), b.x_train)
    std = data.load("digits", scale="standard").x_train
    assert abs(float(std.mean())) < 1e-4 and abs(float(std.std()) - 1) < 1e-3


def test_mnist1d_standard_dataset_and_rng_restored():
    random.seed(7)
    np.random.seed(7)
    mnist1d_module._generate.cache_clear()
    b = data.load("mnist1d")
    assert random.random() == random.Random(7).random()
    assert np.random.rand() == np.random.RandomState(7).rand()
    assert b.x_train.shape == (4000, 40) and b.x_test.shape == (1000, 40)
    counts = torch.bincount(b.y_train, minlength=10)
    assert counts.sum() == 4000 and counts.min() >= 340 and counts.max() <= 460
    assert data.load("mnist1d", flat=False).x_test.shape == (1000, 1, 40)


def test_adding_problem_arjovsky():
    b = data.load("adding", T=200, n_train=5000, n_test=2000)
    x, y = b.x_train, b.y_train
    marks = x[:, :, 1]
    assert torch.all(marks.sum(1) == 2) and torch.all(marks[:, :100].sum(1) == 1)
    assert 0 <= float(x[:, :, 0].min()) and float(x[:, :, 0].max()) <= 1
    torch.testing.assert_close((x[:, :, 0] * marks).sum(1), y)
    const = float(((b.y_test - b.y_train.mean()) ** 2).mean())
    assert b.info["constant_mse"] == pytest.approx(const)
    assert abs(const - 1 / 6) < 0.01


def test_adding_problem_hochreiter_variant():
    b = data.load("adding", T=60, n_train=3000, n_test=10, variant="hochreiter")
    x, y = b.x_train, b.y_train
    pos = x[:, :, 1] == 1
    assert torch.all(pos.sum(1) == 2)
    assert torch.all(pos[:, :10].any(1)) and not pos[:, 29:].any()
    torch.testing.assert_close(0.5 + (x[:, :, 0] * pos).sum(1) / 4, y)
    assert abs(float(y.var()) - 1 / 24) < 0.004


def test_temporal_order_labels_follow_the_signals():
    b = data.load("temporal-order", T=100, n_train=400, n_test=100)
    x, y = b.x_train, b.y_train
    sym = x.argmax(-1)
    assert torch.all(x.sum(-1) == 1)
    assert torch.all(sym[:, 0] == 6) and torch.all(sym[:, -1] == 7)
    signals = (sym == 4) | (sym == 5)
    assert torch.all(signals.sum(1) == 2)
    t = signals.nonzero()[:, 1].view(-1, 2)
    assert t[:, 0].min() >= 10 and t[:, 0].max() <= 20 and t[:, 1].min() >= 50 and t[:, 1].max() <= 60
    first, second = sym.gather(1, t[:, :1]).squeeze(1), sym.gather(1, t[:, 1:]).squeeze(1)
    assert torch.equal((first - 4) * 2 + (second - 4), y)
    assert torch.bincount(y).tolist() == [100] * 4 and torch.bincount(b.y_test).tolist() == [25] * 4


def test_copy_task_targets_are_the_first_symbols():
    b = data.load("copy", T=30, n_train=50, n_test=5)
    sym = b.x_train.argmax(-1)
    assert b.x_train.shape == (50, 50, 10) and b.y_train.shape == (50, 50)
    assert torch.equal(b.y_train[:, -10:], sym[:, :10])
    assert torch.all(b.y_train[:, :-10] == 0)
    assert torch.all(sym[:, 39] == 9) and torch.all(sym[:, 10:39] == 0)
    assert sym[:, :10].min() >= 1 and sym[:, :10].max() <= 8
    assert b.info["baseline_ce"] == pytest.approx(10 * np.log(8) / 50)


def _fake_cifar(folder, n=20):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in CIFAR_FILES:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        with open(folder / f, "wb") as fh:
            pickle.dump(batch, fh)


def test_cifar10_from_local_batches(tmp_path):
    _fake_cifar(tmp_path / "cifar-10-batches-py")
    b = data.load("cifar10", data_dir=tmp_path)  # the parent folder works too
    assert b.x_train.shape == (100, 3, 32, 32) and b.x_test.shape == (20, 3, 32, 32)
    torch.testing.assert_close(b.x_train.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    sub = data.load("cifar10", data_dir=tmp_path / "cifar-10-batches-py", n_train=30, n_test=5)
    assert len(sub.y_train) == 30 and len(sub.y_test) == 5


def test_cifar10_without_data_is_one_line_error_naming_the_files(tmp_path):
    for kw in ({}, {"data_dir": tmp_path}):
        with pytest.raises(InputError, match="data_batch_1.*test_batch.*never downloads") as e:
            data.load("cifar10", **kw)
        assert "\n" not in str(e.value)


def test_no_network_access(monkeypatch, tmp_path):
    def blocked(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    mnist1d_module._generate.cache_clear()  # really regenerate MNIST-1D
    for name in SMALL:
        assert len(data.load(name, **SMALL[name]).x_train) > 0
    _fake_cifar(tmp_path)
    assert len(data.load("cifar10", data_dir=tmp_path).x_train) == 100


def test_loaders_batches_and_order():
    b = data.load("adding", T=10, n_train=100, n_test=30)
    train, test = b.loaders(batch_size=32)
    xb, yb = next(iter(train))
    assert xb.shape == (32, 10, 2) and yb.shape == (32,)
    assert torch.equal(torch.cat([y for _, y in test]), b.y_test)  # test loader in order
    a1 = torch.cat([y for _, y in b.loaders(16, seed=1)[0]])
    a2 = torch.cat([y for _, y in b.loaders(16, seed=2)[0]])
    assert not torch.equal(a1, a2) and torch.equal(a1.sort().values, a2.sort().values)
    with pytest.raises(InputError):
        b.loaders(batch_size=0)


@pytest.mark.parametrize("name,kw,match", [
    ("imagenet", {}, "known datasets: adding"),
    ("adding", {"length": 5}, "no option 'length'"),
    ("adding", {"T": 1}, "T=1"),
    ("adding", {"variant": "x"}, "variant='x'"),
    ("temporal-order", {"T": 5}, "T=5"),
    ("digits", {"scale": "minmax"}, "scale='minmax'"),
])
def test_bad_options_are_one_line_input_errors(name, kw, match):
    with pytest.raises(InputError, match=match) as e:
        data.load(name, **kw)
    assert "\n" not in str(e.value)
