"""watch under DDP, FSDP1 and FSDP2 with 2 gloo processes: rank 0's records equal the
single-process records on the same global batch (rtol 1e-5); the loss is the mean over ranks
under FSDP, rank 0's own under DDP, where watch runs no collective, so uneven inputs under
``DDP.join()`` and an error on one rank leave the run as without watch."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from graddoctor.runlog import decode_floats

sys.path.insert(0, str(Path(__file__).parent))
import _watch_dist_worker as worker  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


@pytest.fixture(scope="module")
def reference():
    model = worker.build()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    w = worker.train(model, opt, worker.batches(), {"flush_every": 2, "update_every": 1})
    return w.records()


KINDS = ("ddp", "fsdp1", "fsdp2")
ALL_RUNS = (*KINDS, "uneven")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One pair of gloo processes runs all three wrappers (process start-up is the slow part)."""
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, worker.__file__, ",".join(ALL_RUNS), _free_port(), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_rank0_norms_equal_single_process(kind, runs, reference):
    got = decode_floats(json.loads((runs / f"{kind}.json").read_text()))
    assert "error" not in got, got.get("error")
    ref_meta, ref_steps = reference
    assert [ly["name"] for ly in got["meta"]["layers"]] == [ly["name"] for ly in ref_meta["layers"]]
    assert got["meta"]["config"]["distributed"] == ("replicated" if kind == "ddp" else "sharded")
    assert len(got["steps"]) == len(ref_steps) == worker.STEPS
    for g, r in zip(got["steps"], ref_steps):
        for key in ("grad_norm", "weight_norm", "update_norm"):
            assert g[key] == pytest.approx(r[key], rel=1e-5), (kind, key, g["step"])
        assert g["nonfinite"] == r["nonfinite"]
        if kind != "ddp":
            assert g["loss"] == pytest.approx(r["loss"], rel=1e-5)  # mean of the ranks' losses
    if kind == "ddp":  # rank 0's own loss, and no collective of watch's
        assert [g["loss"] for g in got["steps"]] == pytest.approx(got["own_losses"], rel=1e-6)
        assert got["collectives"] == 0
    else:  # one all_reduce per flush: 3 steps with flush_every=2 -> a flush at step 3 and one at detach
        assert got["collectives"] == 2


def test_other_ranks_say_the_records_are_on_rank_0(runs):
    assert "records are kept and judged on rank 0" in (runs / "rank1_summary.txt").read_text()


def test_uneven_inputs_under_ddp_join_run_to_the_end(runs):
    got = decode_floats(json.loads((runs / "uneven.json").read_text()))
    assert "error" not in got, got.get("error")
    assert [s["step"] for s in got["steps"]] == list(range(1, 8))  # rank 0's 7 steps, all recorded
    assert got["collectives"] == 0


def test_an_error_on_one_rank_reaches_the_user(tmp_path):
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed not available")
    proc = subprocess.run([sys.executable, worker.__file__, "raise", _free_port(), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "ValueError: a bad batch on rank 1" in proc.stderr, proc.stderr[-3000:]
    assert "EnforceNotMet" not in proc.stderr and "SIGABRT" not in proc.stderr
