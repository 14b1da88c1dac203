"""Depth stress: a 200-layer sigmoid MLP (PyTorch default init) on digits, before and after repair.

Both runs get the same wall-clock CPU budget (default 120 s, one thread) with
Adam (lr 1e-3), batch 64 and the same seeded batches; the repaired run's budget
includes the time spent in ``gd.check`` + ``gd.repair``. Prints the findings, the
repair, and test accuracy / steps / seconds for both.

Usage:
    python benchmarks/depth_stress.py            # 120 s each
    python benchmarks/depth_stress.py 30 --depth 200 --width 64
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.train import accuracy, fit, sampled_batches


def train(model: nn.Module, b, budget: float, seed: int = 0, lr: float = 1e-3, bs: int = 64
          ) -> tuple[float, int, float]:
    """Adam on seeded random batches for ``budget`` seconds; (test accuracy, steps, seconds)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    log = fit(model, opt, sampled_batches(b.x_train, b.y_train, bs, seed), seconds=budget)
    return accuracy(model, b.x_test, b.y_test), log.steps, log.seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("budget", nargs="?", type=float, default=120.0)
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    b = data.load("digits", seed=0)
    x = b.x_train[:64]
    broken = zoo.mlp(depth=a.depth, width=a.width, activation="sigmoid", seed=a.seed)
    fresh = zoo.mlp(depth=a.depth, width=a.width, activation="sigmoid", seed=a.seed)
    t0 = time.perf_counter()
    report = gd.check(fresh, x, jacobian_k=0)
    t_check = time.perf_counter() - t0
    result = gd.repair(fresh, report, example_inputs=x, seed=a.seed)
    t_fix = time.perf_counter() - t0
    print(report.summary())
    print(result)
    acc_b, steps_b, s_b = train(broken, b, a.budget, a.seed)
    acc_r, steps_r, s_r = train(result.model, b, a.budget - t_fix, a.seed)
    print(f"\n{a.depth}-layer sigmoid MLP, width {a.width}, digits, budget {a.budget:.0f} s, 1 thread")
    print(f"broken:   test acc {acc_b:.3f} ({steps_b} steps, {s_b:.1f} s)")
    print(f"repaired: test acc {acc_r:.3f} ({steps_r} steps, {s_r:.1f} s + check {t_check:.2f} s "
          f"+ repair {result.seconds:.2f} s = {100 * t_fix / a.budget:.1f}% of the budget)")


if __name__ == "__main__":
    main()
