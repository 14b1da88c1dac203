"""graddoctor's step-time overhead next to its peers, side by side in one process.

Each tool watches its own copy of the same model (same weights, same batches); the copies
train in interleaved blocks of ``--block`` steps, ``--repeats`` times, the order rotating
every repeat, so the slow drifts of a shared machine hit every tool alike. Per tool, the
ratio tool/plain of CPU time (``time.process_time``, 1 torch thread): ``amortised`` = total
over all blocks, ``median`` with its IQR over the per-repeat ratios.

Tools:
- ``graddoctor``: ``gd.watch(model, opt)`` with the shipped defaults (in memory);
- ``wandb.watch``: ``wandb.watch(model, log="gradients", log_freq=1)`` in an offline run
  (a gradient histogram per parameter every step);
- ``lightning grad_norm``: ``lightning.pytorch.utilities.grad_norm(model, 2)`` every step
  (what ``on_before_optimizer_step`` examples log; per-parameter norms read to the host);
- ``cockpit``: ``cockpit-for-pytorch`` with its "economy" configuration, where installed.
  Each tool that cannot run is printed with the reason, not left out.

Usage:
    python benchmarks/peers.py                       # MLP 8x256, batch 128
    python benchmarks/peers.py --repeats 20 --block 20

Cockpit needs ``setuptools<81`` (``pkg_resources``), which the shared environment does not
have; install it into a side environment and put its packages first on the path:
    python -m venv /tmp/cockpit-venv && /tmp/cockpit-venv/bin/pip install -c constraints.txt \
        "setuptools<81" torch==2.13.0 cockpit-for-pytorch backpack-for-pytorch
    mkdir /tmp/cockpit-overlay && for p in cockpit backpack einops unfoldNd json_tricks pandas \
        seaborn pkg_resources setuptools dateutil tzdata; do \
        ln -s /tmp/cockpit-venv/lib/python3.11/site-packages/$p /tmp/cockpit-overlay/; done
    PYTHONPATH=src:/tmp/cockpit-overlay python -W ignore benchmarks/peers.py
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd


def mlp(depth: int = 8, width: int = 256) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(64, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


class Tool:
    """One model copy, its optimizer, and what the tool does around each step."""

    def __init__(self, name: str, base: nn.Module) -> None:
        self.name, self.model = name, copy.deepcopy(base)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        self.after_backward: Callable[[], Any] = lambda: None
        self.after_step: Callable[[torch.Tensor], Any] = lambda loss: None
        self.close: Callable[[], Any] = lambda: None
        self.times: list[float] = []

    def steps(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
        t0 = time.process_time()
        for x, y in batches:
            loss = F.cross_entropy(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.after_backward()
            self.opt.step()
            self.after_step(loss)
        return time.process_time() - t0


def make_tools(base: nn.Module, tmp: str) -> tuple[list[Tool], dict[str, str]]:
    tools, missing = [Tool("plain", base)], {}
    t = Tool("graddoctor", base)
    w = gd.watch(t.model, t.opt)
    t.after_step, t.close = w.step, w.detach
    tools.append(t)
    try:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        run = wandb.init(mode="offline", dir=tmp, project="graddoctor-peers")
        t = Tool("wandb.watch", base)
        run.watch(t.model, log="gradients", log_freq=1)
        t.after_step = lambda loss, run=run: run.log({"loss": loss.item()})
        t.close = run.finish
        tools.append(t)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        missing["wandb.watch"] = f"{type(e).__name__}: {e}"
    try:
        from lightning.pytorch.utilities import grad_norm

        t = Tool("lightning grad_norm", base)
        t.after_backward = lambda m=t.model: grad_norm(m, 2)
        tools.append(t)
    except Exception as e:  # noqa: BLE001
        missing["lightning grad_norm"] = f"{type(e).__name__}: {e}"
    try:
        from backpack import extend
        from cockpit import Cockpit, CockpitPlotter  # noqa: F401
        from cockpit.utils.configuration import configuration

        t = Tool("cockpit", base)
        t.model = extend(t.model)
        t.opt = torch.optim.SGD(t.model.parameters(), lr=0.01)
        cockpit = Cockpit(t.model.parameters(), quantities=configuration("economy"))
        lossfn = extend(nn.CrossEntropyLoss(reduction="mean"))
        lossfn_flat = extend(nn.CrossEntropyLoss(reduction="none"))

        step = [-1]  # Cockpit's global step from 0, one per optimizer step (its quantities cache by it)

        def cockpit_steps(batches, t=t, cockpit=cockpit, step=step):
            t0 = time.process_time()
            for x, y in batches:
                step[0] += 1
                out = t.model(x)
                loss, losses = lossfn(out, y), lossfn_flat(out, y)
                t.opt.zero_grad()
                with cockpit(step[0], info={"batch_size": len(x), "individual_losses": losses,
                                            "loss": loss, "optimizer": t.opt}):
                    loss.backward(create_graph=cockpit.create_graph(step[0]))
                t.opt.step()
            return time.process_time() - t0

        t.steps = cockpit_steps  # type: ignore[method-assign]
        tools.append(t)
    except Exception as e:  # noqa: BLE001
        missing["cockpit"] = f"{type(e).__name__}: {e}"
    return tools, missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--block", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(128, 64, generator=g), torch.randint(0, 10, (128,), generator=g))
               for _ in range(args.block)]
    with tempfile.TemporaryDirectory() as tmp:
        tools, missing = make_tools(mlp(), tmp)
        for t in tools:
            t.steps(batches[: args.warmup])
        for r in range(args.repeats):
            shift = r % len(tools)
            for t in tools[shift:] + tools[:shift]:
                t.times.append(t.steps(batches))
        for t in tools:
            t.close()
    plain = tools[0].times
    print(f"torch {torch.__version__}, {args.threads} thread(s); MLP 8x256, batch 128; "
          f"{args.repeats} repeats x {args.block} steps; CPU time ratio tool/plain")
    print(f"{'tool':22s} {'ms/step':>8s} {'amortised':>9s} {'median':>7s}  (IQR)")
    for t in tools:
        ratios = sorted(a / b for a, b in zip(t.times, plain))
        q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
        print(f"{t.name:22s} {1000 * sum(t.times) / (len(t.times) * args.block):8.2f} "
              f"{sum(t.times) / sum(plain):9.3f} {statistics.median(ratios):7.3f}  ({q[0]:.3f}-{q[2]:.3f})")
    for name, why in missing.items():
        print(f"{name:22s} not run: {why}")


if __name__ == "__main__":
    main()
