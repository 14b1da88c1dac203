"""Record the realistic suite under ``gd.watch`` (training with ``graddoctor.train.fit``), cached.

Each case's records ``(meta, steps)`` and its final training loss (median of the last 20
steps) are pickled in ``benchmarks/realistic/.cache/<name>-s<seed>.pkl`` (git-ignored): a second
run reads them back, so scoring takes seconds. ``--force`` records again.

Usage:
    python benchmarks/realistic/record.py            # every case, seed 0
    python benchmarks/realistic/record.py a-mlp4-clip-tight --force
    python benchmarks/realistic/record.py --shard 0/2 & python benchmarks/realistic/record.py --shard 1/2
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from runs import BY_NAME, CASES, Case, build  # noqa: E402

import graddoctor as gd  # noqa: E402
from graddoctor.train import fit  # noqa: E402

CACHE = Path(__file__).parent / ".cache"


def record(case: Case, seed: int = 0, force: bool = False) -> dict:
    """``{"meta", "steps", "final_loss", "seconds"}`` of ``case`` (from the cache unless ``force``)."""
    path = CACHE / f"{case.name}-s{seed}.pkl"
    if path.exists() and not force:
        return pickle.loads(path.read_bytes())
    torch.set_num_threads(1)
    s = build(case, seed)
    t0 = time.perf_counter()
    sched = (torch.optim.lr_scheduler.LambdaLR(s.optimizer, lambda t: min(1.0, (t + 1) / s.warmup))
             if s.warmup else None)

    def on_step(step: int, loss: float) -> None:
        w.step(loss)
        if sched is not None:
            sched.step()

    with gd.watch(s.model, optimizer=s.optimizer, example_inputs=s.example) as w:
        log = fit(s.model, s.optimizer, s.batches, steps=s.steps, loss_fn=s.loss_fn, clip=s.clip,
                  on_step=on_step)
        meta, steps = w.records()
    tail = [v for v in log.losses[-20:] if v == v]
    out = {"meta": meta, "steps": steps, "final_loss": statistics.median(tail) if tail else float("nan"),
           "seconds": time.perf_counter() - t0}
    CACHE.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", help="K/N: record every N-th case from the K-th (parallel processes)")
    a = ap.parse_args()
    chosen = [BY_NAME[n] for n in a.names] or CASES
    if a.shard:
        k, n = map(int, a.shard.split("/"))
        chosen = chosen[k::n]
    for c in chosen:
        r = record(c, a.seed, a.force)
        print(f"{c.name:32s} final loss {r['final_loss']:.3f}  {r['seconds']:.1f}s", flush=True)


if __name__ == "__main__":
    main()
