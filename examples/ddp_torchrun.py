"""Data-parallel training under gd.watch, launched with torchrun (CPU: gloo; GPU: nccl).

    torchrun --nproc_per_node=2 examples/ddp_torchrun.py --out runs/ddp --steps 60
    graddoctor watch-report runs/ddp

Every rank attaches the watcher to its DDP model (the hooks read the all-reduced gradients,
one collective per flush); rank 0 writes ``runs/ddp/watch.jsonl`` and prints the report.
The model is a deep sigmoid MLP on the digits data, so the report has something to say.
"""

from __future__ import annotations

import argparse
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import graddoctor as gd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/ddp")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--activation", default="sigmoid")
    ap.add_argument("--init", default="default", help="zoo init: default (PyTorch's), he, xavier, ...")
    args = ap.parse_args()

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
    torch.set_num_threads(1)

    data = gd.data.load("digits", seed=0)
    torch.manual_seed(0)  # the same initial weights on every rank
    model = DDP(gd.zoo.mlp(depth=12, width=64, activation=args.activation, init=args.init).to(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    dataset = TensorDataset(data.x_train, data.y_train)
    loader = DataLoader(dataset, batch_size=32, sampler=DistributedSampler(dataset, shuffle=True, seed=0))

    step = 0
    with gd.watch(model, opt, log_dir=args.out, flush_every=20) as w:
        while step < args.steps:
            loader.sampler.set_epoch(step)
            for x, y in loader:
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
                step += 1
                if step == args.steps:
                    break
    report = w.report() if rank == 0 else None
    if rank == 0:
        print(report)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
