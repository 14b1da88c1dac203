"""Helper for tests/test_distributed.py: train under gd.watch in 2 gloo processes.

Usage: python tests/_watch_dist_worker.py ddp,fsdp1,fsdp2,uneven PORT OUT_DIR  (or: raise PORT OUT_DIR)
For each kind, rank 0 writes {"meta": ..., "steps": [...]} (run-log encoding) to OUT_DIR/<kind>.json.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

STEPS, GLOBAL_BATCH = 3, 16


def build() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))


def batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(GLOBAL_BATCH, 6, generator=g) for _ in range(STEPS)]


def train(model, opt, xs, watch_kw, rank=0, world=1):
    """Train under gd.watch: the watcher (its ``own_losses``: this rank's losses, step by step)."""
    import graddoctor as gd

    per = GLOBAL_BATCH // world
    own = []
    with gd.watch(model, opt, **watch_kw) as w:
        for x in xs:
            loss = model(x[rank * per: (rank + 1) * per]).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
            own.append(loss.item())
    w.own_losses = own
    return w


def train_uneven(model, opt, rank):
    """DDP with uneven inputs under ``model.join()`` (rank 0: 7 batches, rank 1: 4), flush every 2
    steps: the watcher. Before: watch's flush all-reduce met Join's shadow collectives (abort)."""
    import graddoctor as gd

    g = torch.Generator().manual_seed(rank)
    with gd.watch(model, opt, flush_every=2) as w, model.join():
        for _ in range(7 if rank == 0 else 4):
            loss = model(torch.randn(8, 6, generator=g)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    return w


def raise_on_rank1(model, opt, rank):
    """Rank 1 raises at its third step inside the ``with``: its own error must reach the user
    (before: its exit flush all-reduce met rank 0 in DDP's, and gloo aborted it unreported)."""
    import graddoctor as gd

    with gd.watch(model, opt, flush_every=2) as w:
        for step in range(6):
            if rank == 1 and step == 2:
                raise ValueError("a bad batch on rank 1")
            loss = model(torch.randn(8, 6)).pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            w.step(loss)
    return w


def wrap(kind: str, model: nn.Module) -> nn.Module:
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model)
    if kind == "fsdp1":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        for i in (0, 2):
            model[i] = FSDP(model[i], use_orig_params=True, device_id=torch.device("cpu"))
        return FSDP(model, use_orig_params=True, device_id=torch.device("cpu"))
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for i in (0, 2, 4):
            fully_shard(model[i])
        fully_shard(model)
        return model
    raise SystemExit(f"unknown kind {kind}")


def count_watch_collectives() -> dict:
    """Wrap dist.all_reduce to count the calls made by graddoctor (not by DDP/FSDP)."""
    counter = {"n": 0}
    original = dist.all_reduce

    def counted(*args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__", "").startswith("graddoctor"):
            counter["n"] += 1
        return original(*args, **kwargs)

    dist.all_reduce = counted
    counter["restore"] = lambda: setattr(dist, "all_reduce", original)
    return counter


def run(rank: int, world: int, kinds: str, port: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        for kind in kinds.split(","):
            counter = count_watch_collectives()
            try:
                model = wrap("ddp" if kind in ("uneven", "raise") else kind, build())
                opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
                if kind == "raise":
                    raise_on_rank1(model, opt, rank)
                if kind == "uneven":
                    w = train_uneven(model, opt, rank)
                else:
                    w = train(model, opt, batches(), {"flush_every": 2, "update_every": 1}, rank, world)
                meta, steps = w.records()
                if rank == 1 and kind == "ddp":  # what a user printing the report on every rank reads there
                    with open(os.path.join(out, "rank1_summary.txt"), "w") as f:
                        f.write(w.report().summary())
                result = {"meta": meta, "steps": steps, "collectives": counter["n"],
                          "own_losses": getattr(w, "own_losses", None)}
            except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
                if kind == "raise":  # the user's error leaves the process, as in a real run
                    raise
                result = {"error": f"{type(e).__name__}: {e}"}
            finally:
                counter["restore"]()
            if rank == 0:
                from graddoctor.runlog import encode

                with open(os.path.join(out, f"{kind}.json"), "w") as f:
                    f.write(encode(result))
            dist.barrier()
    finally:
        dist.destroy_process_group()
    # leave without running C++ static destructors: gloo's worker threads sometimes abort the
    # process at interpreter exit ("terminate called without an active exception") after all
    # the work is done and written - a teardown race in torch/gloo, not in graddoctor
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    kinds, port, out = sys.argv[1:4]
    mp.spawn(run, args=(2, kinds, port, out), nprocs=2)
