"""Time gd.check on CPU: a 1000-layer MLP (width 64) and a GPT-2-small-sized model.

Targets: < 5 s and < 30 s. Prints one line per model (best of ``--repeats``) with
the time split into the map, the static rules and the probe.

    python benchmarks/check_speed.py [--repeats 3] [--threads N] [--seq 128] [--batch 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

import graddoctor as gd
from graddoctor import zoo
from graddoctor.diagnose.checktime.static import static_findings
from graddoctor.measure.probe import probe
from graddoctor.modelmap import ModelMap


def timed(model, inputs, repeats: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        m = ModelMap(model, inputs)
        t1 = time.perf_counter()
        static_findings(m, model)
        t2 = time.perf_counter()
        probe(model, inputs, mmap=m)
        t3 = time.perf_counter()
        report = gd.check(model, inputs)
        t4 = time.perf_counter()
        row = {"map": t1 - t0, "static": t2 - t1, "probe": t3 - t2, "check": t4 - t3}
        best = {k: min(v, best.get(k, float("inf"))) for k, v in row.items()}
    best["findings"] = len(report.findings)
    return best


def gpt2_small():
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12)  # 124M parameters
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seq", type=int, default=128, help="GPT-2 tokens per sequence")
    ap.add_argument("--batch", type=int, default=2, help="GPT-2 batch")
    ap.add_argument("--only", choices=["mlp", "gpt2"], default=None)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cases = []
    if args.only in (None, "mlp"):
        cases.append(("mlp-1000x64", lambda: zoo.mlp(depth=1000, width=64, activation="relu", init="he"),
                      lambda m: torch.randn(32, 64), 5.0))
    if args.only in (None, "gpt2"):
        cases.append(("gpt2-small-12x768", gpt2_small,
                      lambda m: {"input_ids": (ids := torch.randint(0, 50257, (args.batch, args.seq))),
                                 "labels": ids}, 30.0))
    for name, build, make_inputs, target in cases:
        model = build()
        t = timed(model, make_inputs(model), args.repeats)
        verdict = "OK" if t["check"] < target else "SLOW"
        print(f"{name:<20} check {t['check']:6.2f} s (target < {target:.0f} s: {verdict}) | "
              f"map {t['map']:.2f} s, static {t['static']:.2f} s, probe {t['probe']:.2f} s, "
              f"{t['findings']} findings")


if __name__ == "__main__":
    main()
