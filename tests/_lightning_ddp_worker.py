"""Worker for the Lightning DDP test: Trainer(strategy="ddp", 2 CPU processes, gloo); Lightning
relaunches this script for rank 1. Each rank reads every other sample, in order (Lightning's
own DistributedSampler shuffles training data), so that the two ranks' batch k together are the
single process's batch k. Rank 0 writes the recorded steps and its own losses to argv[1]."""

from __future__ import annotations

import json
import sys

import torch
from torch.utils.data import DataLoader, DistributedSampler

torch.set_num_threads(1)

from graddoctor.integrations.lightning import GradDoctorCallback  # noqa: E402
from lightning_models import Regressor, loader, trainer  # noqa: E402


class Interleaved(Regressor):
    own_losses: list[float] = []  # this rank's losses (watch records rank 0's own under DDP)

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.own_losses.append(float(loss.detach()))
        return loss

    def train_dataloader(self):
        data = loader(n=48).dataset
        sampler = DistributedSampler(data, num_replicas=2, rank=self.trainer.global_rank, shuffle=False)
        return DataLoader(data, batch_size=4, sampler=sampler)


if __name__ == "__main__":
    model, cb = Interleaved(), GradDoctorCallback()
    tr = trainer(callbacks=[cb], strategy="ddp", devices=2, use_distributed_sampler=False)
    tr.fit(model)
    if tr.global_rank == 0:
        meta, steps = cb.records()
        with open(sys.argv[1], "w") as f:
            json.dump({"world_size": tr.world_size, "meta": meta, "steps": steps, "own_losses": model.own_losses}, f)
