"""CPU cost of ``gd.watch(..., autofix=True)`` over a long healthy run, side by side in one process.

Autofix judges its records every 10 steps; a check reads the window since attach. Before the
window was thinned (``fix/autofix/judge.thinned``) and the checks spaced out past 500 steps
(``watcher.CHECK_SPAN``) a run was quadratic: a 2-layer MLP, 2000 steps, took 1.6 s plain and
34.7 s under autofix. Here three copies of one model (same weights, same batches) train for
``--steps`` steps each: plain, ``gd.watch`` and ``gd.watch(autofix=True)``; printed: the CPU time
(``time.process_time``, 1 torch thread) of each, the ratios to plain, and the CPU time of the
autofix steps in the first and the last 10% of the run (a quadratic run's last steps cost more).

Models: ``small`` (64-64-10 ReLU MLP, batch 64: the cheapest step, where a check weighs most) and
``mlp50`` (50 x 256 ReLU MLP, batch 128). Data: digits (8x8), offline.

Usage:
    python benchmarks/autofix_overhead.py                       # both models, 2000 steps
    python benchmarks/autofix_overhead.py --models small --steps 5000
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor import data


def small() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def mlp50() -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(64, 256), nn.ReLU()]
    for _ in range(48):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(256, 10))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


MODELS = {"small": (small, 64), "mlp50": (mlp50, 128)}


def run(model: nn.Module, batches: list, mode: str) -> tuple[float, list[float]]:
    """(total CPU seconds, CPU seconds per step) of one copy trained on ``batches``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    w = None if mode == "plain" else gd.watch(model, opt, autofix=(mode == "autofix"))
    per_step = []
    t0 = time.process_time()
    for x, y in batches:
        t = time.process_time()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if w is not None:
            w.step(loss)
        per_step.append(time.process_time() - t)
    total = time.process_time() - t0
    if w is not None:
        assert not getattr(w, "fixes", []), "a healthy run got an autofix action"
        w.detach()
    return total, per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="small,mlp50")
    ap.add_argument("--steps", type=int, default=2000)
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    digits = data.load("digits", seed=0)
    print(f"{'model':8s} {'steps':>6s} {'plain s':>8s} {'watch s':>8s} {'autofix s':>9s} {'watch/plain':>11s} "
          f"{'autofix/plain':>13s} {'autofix ms/step first 10%':>26s} {'last 10%':>9s}")
    for name in a.models.split(","):
        build, bs = MODELS[name]
        torch.manual_seed(0)
        base = build()
        g = torch.Generator().manual_seed(0)
        batches = []
        for _ in range(a.steps):
            i = torch.randint(0, len(digits.x_train), (bs,), generator=g)
            batches.append((digits.x_train[i], digits.y_train[i]))
        times = {mode: run(copy.deepcopy(base), batches, mode) for mode in ("plain", "watch", "autofix")}
        k = max(1, a.steps // 10)
        auto = times["autofix"][1]
        print(f"{name:8s} {a.steps:6d} {times['plain'][0]:8.1f} {times['watch'][0]:8.1f} {times['autofix'][0]:9.1f} "
              f"{times['watch'][0] / times['plain'][0]:11.2f} {times['autofix'][0] / times['plain'][0]:13.2f} "
              f"{1e3 * sum(auto[:k]) / k:26.2f} {1e3 * sum(auto[-k:]) / k:9.2f}", flush=True)


if __name__ == "__main__":
    main()
