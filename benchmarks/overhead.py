"""Step-time overhead of gd.watch, measured side by side in one process.

For each model, a plain copy and a watched copy (same weights, same batches)
train in interleaved blocks of ``--block`` steps, ``--repeats`` times, the order
alternating every repeat. Two ratios watched/plain: ``amortised`` = total CPU time
of all watched blocks over that of all plain blocks (every sampled step included:
the blocks span whole sampling periods, 400 steps = 2 x lcm(100, 200) by default, after a
200-step warm-up past a run's dense early samples;
the acceptance number), and ``median`` = the median of the per-repeat ratios with
its IQR (a typical block; ignores the outliers of a shared machine, but also
underweights the rare blocks holding a sampled step). Interleaving cancels the
slow drifts of a shared machine. The ratios are
of CPU time (``time.process_time``) with 1 torch thread by default: on a
machine shared with other jobs, wall-clock time mostly measures the scheduler;
the wall-clock ratio is printed next to it.

Models (CPU): (a) a 50x256 ReLU MLP, batch 128; (b) a small ResNet (8 layers,
width 16, CIFAR-style) on 32x32 inputs, batch 64.

Configurations: "aa" (A/A control: the second copy is not watched; its ratio
shows the measurement noise and any bias between the two copies), "floor"
(gradient norms only: no weight/update norms, no activations), "grads"
(activation_every=0), "acts" (activations only), "default" (the shipped defaults, JSONL sink on), "actN"
(activation statistics every N steps), "act1" (every step). A "-nohist" suffix (e.g.
"default-nohist", "act1-nohist") runs that configuration with the activation histograms
replaced by a constant: the difference to the plain name is the histograms' own cost.

Usage:
    python benchmarks/overhead.py                    # both models, aa/floor/default/act1
    python benchmarks/overhead.py --models mlp --configs default,act1 --repeats 15
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from contextlib import nullcontext
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from graddoctor.diagnose.watching import watch
from graddoctor.measure.monitor import activations
from graddoctor.measure.monitor.watcher import ACTIVATION_EVERY

CONFIGS: dict[str, dict | None] = {
    "aa": None,  # A/A control: the second copy is not watched (shows the noise and any bias)
    "floor": {"activation_every": 0, "update_every": 10**9, "weight_every": 10**9},
    "grads": {"activation_every": 0},
    "acts": {"update_every": 10**9, "weight_every": 10**9},
    "default": {},
    "act100": {"activation_every": 100},
    "act50": {"activation_every": 50},
    "act20": {"activation_every": 20},
    "act10": {"activation_every": 10},
    "act5": {"activation_every": 5},
    "act1": {"activation_every": 1},
}


def mlp() -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(50):
        layers += [nn.Linear(256, 256), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(256, 10))


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU()
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))) + self.short(x))


def resnet() -> nn.Module:
    """ResNet-8 for 32x32 inputs (stem, 3 stages of one block, widths 16/32/64)."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


MODELS = {
    "mlp": (mlp, lambda: torch.randn(128, 256), 128),
    "resnet": (resnet, lambda: torch.randn(64, 3, 32, 32), 64),
}


def make_step(model, opt, w=None):
    def step(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if w is not None:
            w.step(loss)
    return step


#: steps run before timing: past the dense early samples of a run (watch samples steps 2, 4, 8,
#: ... within the first period of each statistic; the longest default period is 200)
WARMUP_STEPS = 200


def block_time(step, batches) -> tuple[float, float]:
    """(CPU seconds, wall seconds) per step over the batches."""
    c, t = time.process_time(), time.perf_counter()
    for x, y in batches:
        step(x, y)
    n = len(batches)
    return (time.process_time() - c) / n, (time.perf_counter() - t) / n


def measure(name: str, config: str, repeats: int, block: int, log_dir: str) -> dict:
    base, _, suffix = config.partition("-")
    kw = CONFIGS[base]
    if suffix not in ("", "nohist"):
        raise SystemExit(f"unknown configuration suffix {suffix!r} in {config!r}: use -nohist")
    with mock.patch.object(activations, "histogram_counts", _no_histogram) if suffix else nullcontext():
        return _measure(name, config, kw, repeats, block, log_dir)


def _no_histogram(x: torch.Tensor, lo_hi: torch.Tensor, bins: int) -> torch.Tensor:
    """The histogram's stand-in for "-nohist": constant zeros, no pass over ``x``."""
    return torch.zeros(bins, device=x.device)


def _measure(name: str, config: str, kw: dict | None, repeats: int, block: int, log_dir: str) -> dict:
    build, make_x, batch = MODELS[name]
    torch.manual_seed(0)
    plain = build()
    watched = copy.deepcopy(plain)
    opt_p = torch.optim.SGD(plain.parameters(), lr=1e-3, momentum=0.9)
    opt_w = torch.optim.SGD(watched.parameters(), lr=1e-3, momentum=0.9)
    batches = [(make_x(), torch.randint(0, 10, (batch,))) for _ in range(block)]
    w = None if kw is None else watch(watched, opt_w, log_dir, example_inputs=batches[0][0], **kw)
    step_p, step_w = make_step(plain, opt_p), make_step(watched, opt_w, w)
    for _ in range(-(-WARMUP_STEPS // block)):  # warm-up: allocator, oneDNN kernels, flushes,
        block_time(step_p, batches)             # and a run's dense early sampling (steps < 200)
        block_time(step_w, batches)
    tp, tw, ratios, wall_ratios = [], [], [], []
    for r in range(repeats):
        if r % 2:
            a = block_time(step_w, batches)
            b = block_time(step_p, batches)
        else:
            b = block_time(step_p, batches)
            a = block_time(step_w, batches)
        tp.append(b[0])
        tw.append(a[0])
        ratios.append(a[0] / b[0])
        wall_ratios.append(a[1] / b[1])
    if w is not None:
        w.detach()
    q = statistics.quantiles(ratios, n=4)
    return {"model": name, "config": config, "plain_ms": 1e3 * statistics.mean(tp),
            "watched_ms": 1e3 * statistics.mean(tw), "amortised": sum(tw) / sum(tp),
            "ratio": statistics.median(ratios),
            "ratio_q1": q[0], "ratio_q3": q[2], "wall_ratio": statistics.median(wall_ratios),
            "repeats": repeats, "block": block, "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mlp,resnet")
    ap.add_argument("--configs", default="aa,floor,default,act1")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--block", type=int, default=10, help="steps per timed block")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: CPU time is then robust to a busy machine)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    print(f"default activation_every = {ACTIVATION_EVERY}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("amortised = total CPU time watched / plain (process_time, every sampled step included); "
          "median = median over repeats of the per-block ratio (IQR); wall = median, wall-clock")
    print(f"{'model':<8} {'config':<14} {'plain ms':>9} {'watched ms':>11} {'amortised':>9} "
          f"{'median':>7} {'(IQR)':>13} {'wall':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for config in args.configs.split(","):
                r = measure(name, config, args.repeats, args.block, f"{tmp}/{name}-{config}")
                results.append(r)
                print(f"{name:<8} {config:<14} {r['plain_ms']:>9.2f} {r['watched_ms']:>11.2f} "
                      f"{r['amortised']:>9.3f} "
                      f"{r['ratio']:>7.3f}  ({r['ratio_q1']:.3f}-{r['ratio_q3']:.3f}) "
                      f"{r['wall_ratio']:>6.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
