"""Depth without limits: check, full repair and keep-architecture repair of very deep plain nets.

For each row (activation, depth; PyTorch default init, width 32, no skips, no norm) on digits:
the check's verdict and time; then, for each repair mode, the repair time and the steps and
seconds of training (Adam, batch 64, seeded batches) until the test accuracy first reaches
90% (evaluated every ``--eval-every`` steps; "-" when the budget ran out first), and the
best accuracy seen.

- ``full``: ``gd.repair(model, report, example_inputs=x)`` (activation swap, re-init, ReZero
  skips), trained at Adam 1e-3 (the issue's setting).
- ``keep``: ``gd.repair(model, report, example_inputs=x, keep_architecture=True,
  optimizer=Adam, train_loader=batches)``: a mean-field init, then the LR range test sets
  the learning rate (``result.lr``); trained with ``result.optimizer``. The architecture is
  compared before and after (module types, in order).

``--cnn`` adds a plain tanh CNN on MNIST-1D (``--cnn-depth`` conv layers, width 32). A
``rezero`` row is the healthy control (ReLU, He init, ReZero residual blocks): its check must
find no vanishing-gradient. Times are wall-clock and process CPU (all threads) side by side.

    PYTHONPATH=src python benchmarks/depth.py --rows tanh:200,tanh:1000 --modes keep
    PYTHONPATH=src python benchmarks/depth.py --rows sigmoid:10000 --modes full --budget 600
    PYTHONPATH=src python benchmarks/depth.py --rows sigmoid:10000,rezero:10000 --modes "" --threads 1
"""

from __future__ import annotations

import argparse
import time
from itertools import islice

import torch
from torch import nn

import graddoctor as gd
from graddoctor import data, zoo
from graddoctor.train import accuracy, fit, sampled_batches

TARGET = 0.90


def architecture(model: nn.Module) -> list[str]:
    """Module class names in registration order (what keep_architecture must not change)."""
    return [type(m).__name__ for m in model.modules()]


def train_to_target(model: nn.Module, opt: torch.optim.Optimizer, b: data.Bundle, budget: float,
                    max_steps: int, every: int, seed: int) -> dict:
    """Train until TARGET test accuracy, ``budget`` seconds or ``max_steps``; first hit and best."""
    hit: dict = {"steps": None, "seconds": None, "best": 0.0, "trained": 0}
    t0 = time.perf_counter()

    def on_step(step: int, _loss: torch.Tensor) -> bool:
        hit["trained"] = step
        if step % every:
            return False
        acc = accuracy(model, b.x_test, b.y_test)
        hit["best"] = max(hit["best"], acc)
        print(f"    step {step}: test acc {100 * acc:.1f}% ({time.perf_counter() - t0:.0f} s)", flush=True)
        if acc >= TARGET:
            hit["steps"], hit["seconds"] = step, time.perf_counter() - t0
            return True
        return False

    fit(model, opt, sampled_batches(b.x_train, b.y_train, 64, seed), steps=max_steps,
        seconds=budget, on_step=on_step)
    return hit


def run_row(kind: str, depth: int, modes: list[str], a: argparse.Namespace) -> None:
    cnn = kind == "cnn-tanh"
    b = data.load("mnist1d", flat=False) if cnn else data.load("digits", seed=0)
    x = b.x_train[:64]

    def make() -> nn.Module:
        if cnn:
            return zoo.cnn(depth=depth, kind="plain", dims=1, in_channels=1, width=32,
                           activation="tanh", seed=a.seed)
        if kind == "rezero":
            return zoo.mlp(depth=depth, width=a.width, activation="relu", init="he", residual="rezero",
                           seed=a.seed)
        return zoo.mlp(depth=depth, width=a.width, activation=kind, seed=a.seed)

    model = make()
    t0, c0 = time.perf_counter(), time.process_time()
    report = gd.check(model, x, jacobian_k=0)
    t_check, c_check = time.perf_counter() - t0, time.process_time() - c0
    codes = sorted({f"{f.code} ({f.severity})" for f in report.findings})
    name = f"{'tanh CNN (mnist1d)' if cnn else kind + ' MLP'} {depth} layers"
    vanishing = report.by_code("vanishing-gradient")
    print(f"\n{name}: check {t_check:.2f} s wall, {c_check:.2f} s CPU ({torch.get_num_threads()} threads), "
          f"vanishing-gradient {'yes' if vanishing else 'NO'}; findings: {', '.join(codes)}", flush=True)
    if vanishing:
        print(f"  {vanishing[0].message[:300]}", flush=True)
    for mode in (m for m in modes if m):
        torch.manual_seed(a.seed)
        r0 = time.process_time()
        if mode == "full":
            res = gd.repair(model, report, example_inputs=x, seed=a.seed)
            opt = torch.optim.Adam(res.model.parameters(), lr=1e-3)
            lr = 1e-3
        else:
            sweep_opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            loader = list(islice(sampled_batches(b.x_train, b.y_train, 64, a.seed + 1000), a.sweep_steps))
            res = gd.repair(model, report, example_inputs=x, seed=a.seed, keep_architecture=True,
                            optimizer=sweep_opt, train_loader=loader,
                            lr_find_options={"num_steps": a.sweep_steps, "start_lr": 1e-7, "end_lr": 1.0})
            same = architecture(res.model) == architecture(model)
            opt = res.optimizer
            lr = res.lr
            theory = res.theory or {}
            print(f"  keep: architecture unchanged: {same}; init: "
                  f"{', '.join(c.remedy for c in res.applied)}; lr {lr}; q* {theory.get('q_star')}; "
                  f"sigma_w {theory.get('sigma_w')}; xi_c {theory.get('xi_c')}", flush=True)
            if lr is None:
                lr = a.fallback_lr
                opt = torch.optim.Adam(res.model.parameters(), lr=lr)
        c_repair = time.process_time() - r0
        c0 = time.process_time()
        hit = train_to_target(res.model, opt, b, a.budget, a.max_steps, a.eval_every, a.seed)
        cpu = time.process_time() - c0
        steps = "-" if hit["steps"] is None else str(hit["steps"])
        secs = "-" if hit["seconds"] is None else f"{hit['seconds']:.0f}"
        print(f"  {mode:<5} repair {res.seconds:6.2f} s ({c_repair:.2f} s CPU) | lr {lr:.2g} | to 90%: {steps:>5} steps, "
              f"{secs:>5} s | best {100 * hit['best']:.1f}% in {hit['trained']} steps "
              f"({cpu:.0f} s CPU training)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="sigmoid:100,tanh:100,sigmoid:1000,tanh:1000,sigmoid:10000,tanh:10000")
    ap.add_argument("--modes", default="full,keep")
    ap.add_argument("--cnn", action="store_true")
    ap.add_argument("--cnn-depth", type=int, default=1000)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds of training per run")
    ap.add_argument("--max-steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--sweep-steps", type=int, default=100)
    ap.add_argument("--fallback-lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = [(r.split(":")[0], int(r.split(":")[1])) for r in a.rows.split(",") if r]
    if a.cnn:
        rows.append(("cnn-tanh", a.cnn_depth))
    for kind, depth in rows:
        run_row(kind, depth, a.modes.split(","), a)


if __name__ == "__main__":
    main()
