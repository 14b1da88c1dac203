"""CIFAR-10 batches come from a user-given folder: they are read with a restricted unpickler
that builds numpy arrays, bytes, lists and dicts only, and refuses anything else unrun."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from graddoctor.data.cifar10 import load_batch
from graddoctor.errors import InputError


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_real_batch_layout_loads_in_every_protocol(tmp_path, protocol):
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(i) for i in range(4)],
             b"data": np.arange(4 * 3072, dtype=np.uint8).reshape(4, 3072),
             b"filenames": [b"a.png"] * 4, b"np_labels": list(np.arange(4))}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=protocol))
    d = load_batch(tmp_path / "b")
    assert np.array_equal(d[b"data"], batch[b"data"]) and d[b"labels"] == [0, 1, 2, 3]


@pytest.mark.parametrize("payload", [_Evil(), {b"data": _Evil(), b"labels": []}, [np.int64(1), pickle.Pickler]])
def test_any_other_global_is_refused_and_never_run(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b").write_bytes(pickle.dumps(payload))
    with pytest.raises(InputError, match="not a CIFAR-10 python batch.*refused global") as e:
        load_batch(tmp_path / "b")
    assert "\n" not in str(e.value) and not (tmp_path / "PWNED").exists()


def test_garbage_and_wrong_layouts_are_one_line_errors(tmp_path):
    (tmp_path / "g").write_bytes(b"\x80\x04garbage")
    (tmp_path / "l").write_bytes(pickle.dumps([1, 2]))
    for name in ("g", "l"):
        with pytest.raises(InputError, match="not a CIFAR-10 python batch"):
            load_batch(tmp_path / name)
