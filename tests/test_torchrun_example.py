"""examples/ddp_torchrun.py on 2 gloo processes (torchrun), then `graddoctor watch-report` on
its run log: every step recorded once by rank 0, the deep sigmoid net's vanishing gradients
found, and the ReLU + He-init control of the same depth not flagged for them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def torchrun(out: Path, activation: str, init: str = "default", steps: int = 30) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(ROOT / "examples" / "ddp_torchrun.py"), "--out", str(out), "--steps", str(steps),
                           "--activation", activation, "--init", init], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def watch_report(out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "graddoctor", "watch-report", str(out), "--json"],
                          env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(proc.stdout)
    has_error = any(f["severity"] == "error" for f in report["findings"])
    assert proc.returncode == (1 if has_error else 0), proc.stderr[-2000:]  # exit 1: an error finding
    return report


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_example_and_watch_report(tmp_path):
    from graddoctor.runlog import read_run

    torchrun(tmp_path / "sigmoid", "sigmoid")
    meta, steps = read_run(tmp_path / "sigmoid")
    assert meta["config"]["world_size"] == 2 and meta["config"]["distributed"] == "replicated"
    assert [s["step"] for s in steps] == list(range(1, 31))
    assert "vanishing-gradient" in {f["code"] for f in watch_report(tmp_path / "sigmoid")["findings"]}

    torchrun(tmp_path / "relu", "relu", init="he")  # the fixed net (PyTorch's default init shrinks the signal)
    assert "vanishing-gradient" not in {f["code"] for f in watch_report(tmp_path / "relu")["findings"]}
