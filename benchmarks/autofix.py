"""Autofix benchmark: repair during training vs a tuned healthy reference, both training suites.

For every repairable fault of the scenario suite (``benchmarks/scenarios/``) and the realistic
suite (``benchmarks/realistic/``), run definitions imported read-only (the fault set, dataset
keys, exclusions and measured costs are in ``autofix_suite.py``):

- the **tuned reference**: the fault's healthy twin (the realistic suite's ``twin``, trained with
  its own warm-up if it has one; for the scenario suite the same architecture and data with the
  fault removed) trained for the fault's step budget ``N`` at its learning rate x {1/3, 1, 3};
  the best held-out score at step ``N`` is the reference (accuracy; R^2 for the adding task).
  The factor is swept on the first seed of the run only and reused for the other seeds;
  reference scores are cached per (twin, seed, factor, N) within the process;
- the **broken score**: the broken setup's score at step N without autofix. When autofix took
  no action up to step N, the autofix run's score at N *is* the broken run's (same seed, data
  and batches; checked on seed 0 for b-resnet8-bn-eval, b-plaincnn8-bn-eval, a-mlp6-tanh-saturated
  and mlp4-relu-75pct-dead, where autofix took no action: the plain broken run gave the identical
  score to the last digit), so the broken run is trained only when autofix acted by step N;
- the **autofix run**: the broken setup trained in the same loop under
  ``gd.watch(model, opt, autofix=True)`` for up to ``CAP`` x N steps, scored every N/10 steps,
  and **stopped early** at the first scoring step >= N whose score is within 2 points of the
  reference (its final score is then that score; a run that hit before N and fell back below
  trains on, up to CAP x N).

A row is **harm** when the broken score is below the reference - 2 points; rows without harm
(the fault costs nothing at this budget) and rows whose reference does not learn (chance + 5
points) are excluded from the score. A harmful fault is **fixed** when the autofix run reaches
the reference - 2 points within CAP x N steps (hit), its final score beats the broken score,
AND a fix that stayed (not undone) came before the hit (a slow run that reaches the target in
the extra steps past N with no fix was not fixed by autofix); its **cost** is the step of the first hit (the steps before the fix included) over N. Healthy
controls: every healthy run of both suites trained for its budget under ``autofix=True``; any
action is a false alarm. CPU: process time of the whole run.

Usage (``--shard k/m`` splits the faults and the healthy runs over processes, each process
running every seed, so that every process sweeps the reference on the same first seed):
    python benchmarks/autofix.py --list [--measure]
    python benchmarks/autofix.py --seeds 0 1 2 3 4 --shard 0/2 --json a.json   # and 1/2 -> b.json
    python benchmarks/autofix.py --merge a.json b.json
    python benchmarks/autofix.py --only faults mlp20-sigmoid-sgd a-mlp4-sgd-lr10x
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "scenarios"))
sys.path.insert(0, str(HERE / "realistic"))

import runs as realistic  # noqa: E402
import scenarios as sc  # noqa: E402
from autofix_suite import (  # noqa: E402
    COST_S,
    EXCLUDED,
    REALISTIC_FAULTS,
    SCENARIO_TWINS,
    chance,
    cost_class,
    score,
)

import graddoctor as gd  # noqa: E402

CAP = 2.0  # the autofix run trains at most CAP x N steps
POINTS = 0.02  # "within 2 points"
SWEEP = (1 / 3, 1.0, 3.0)

# ---------------------------------------------------------------- the faults


@dataclass
class Setup:
    """One trainable run, whichever suite it comes from."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    batches: object
    loss_fn: Callable
    steps: int
    example: torch.Tensor
    clip: float | None = None
    warmup: int = 0  # linear LR warm-up steps (a realistic twin's scheduler)


@dataclass
class Fault:
    suite: str
    name: str
    data: str
    broken: Callable[[int], Setup]
    twin: Callable[[int], Setup]
    twin_key: str  # names the twin's configuration (the reference cache key)


def from_scenario(build: Callable) -> Callable[[int], Setup]:
    def make(seed: int) -> Setup:
        torch.manual_seed(seed)
        r = build(seed)
        return Setup(r.model, r.optimizer, r.batches, r.loss_fn, r.steps, r.example)
    return make


def from_case(case) -> Callable[[int], Setup]:
    def make(seed: int) -> Setup:
        s = realistic.build(case, seed)
        return Setup(s.model, s.optimizer, s.batches, s.loss_fn, s.steps, s.example, s.clip, s.warmup)
    return make


def faults() -> list[Fault]:
    out = [Fault("scenarios", n, d, from_scenario(sc.by_name(n).build), from_scenario(twin), f"twin-of-{n}")
           for n, (d, twin) in SCENARIO_TWINS.items()]
    for n, d in REALISTIC_FAULTS.items():
        case = realistic.BY_NAME[n]
        out.append(Fault("realistic", n, d, from_case(case), from_case(realistic.BY_NAME[case.twin]), case.twin))
    return out


def healthy() -> list[tuple[str, str, Callable[[int], Setup]]]:
    out = [("scenarios", s.name, from_scenario(s.build)) for s in sc.healthy()]
    out += [("realistic", c.name, from_case(c)) for c in realistic.CASES if c.fault == "none"]
    return out


# ---------------------------------------------------------------- training


def train(s: Setup, steps: int, kind: str | None, every: int, autofix: bool,
          target: float | None = None, n: int = 0) -> tuple[list, list]:
    """Train ``s`` for ``steps``; return ([(step, score)] every ``every`` steps, fix events).
    With a ``target``, stop at the first scoring step >= ``n`` whose score reaches it."""
    curve: list = []
    sched = (torch.optim.lr_scheduler.LambdaLR(s.optimizer, lambda t: min(1.0, (t + 1) / s.warmup))
             if s.warmup else None)
    w = gd.watch(s.model, s.optimizer, example_inputs=s.example, autofix=True) if autofix else None
    try:
        for t in range(1, steps + 1):
            x, y = next(s.batches)
            loss = s.loss_fn(s.model(x), y)
            s.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.clip is not None:
                torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.clip)
            s.optimizer.step()
            if sched is not None:
                sched.step()
            if w is not None:
                w.step(loss)
            if kind is not None and t % every == 0:
                curve.append((t, score(s.model, kind)))
                if target is not None and t >= n and curve[-1][1] >= target:
                    break
    finally:
        if w is not None:
            w.detach()
    return curve, (w.fixes if w is not None else [])


def with_lr(s: Setup, factor: float) -> Setup:
    for g in s.optimizer.param_groups:
        g["lr"] = g["lr"] * factor
    return s


@dataclass
class Row:
    suite: str
    name: str
    seed: int
    steps: int
    reference: float
    ref_lr_factor: float
    judged: bool  # the reference learns (chance + 5 points)
    harm: bool  # the broken run is below the reference - 2 points at N
    fixed: bool  # hit AND final > broken
    cost: float | None  # first hit step / N
    broken: float  # the broken run's score at N (no autofix)
    at_budget: float
    final: float
    stopped: int  # the autofix run's last step (early stop)
    fixes: list = field(default_factory=list)
    seconds: float = 0.0  # process time of the row (reference runs included)

    @property
    def scored(self) -> bool:
        return self.judged and self.harm


_REF: dict = {}  # (twin_key, seed, factor, n) -> score
_FACTOR: dict = {}  # twin_key -> the lr factor swept on the run's first seed


def reference(f: Fault, seed: int, n: int) -> tuple[float, float]:
    """(score, lr factor): the twin at the best factor of SWEEP (swept on the first seed asked)."""
    def at(k: float) -> float:
        key = (f.twin_key, seed, k, n)
        if key not in _REF:
            _REF[key] = score_after(with_lr(f.twin(seed), k), n, f.data)
        return _REF[key]
    if f.twin_key not in _FACTOR:
        _FACTOR[f.twin_key] = max(SWEEP, key=at)
    k = _FACTOR[f.twin_key]
    return at(k), k


def run_fault(f: Fault, seed: int) -> Row:
    t0 = time.process_time()
    n = f.broken(seed).steps
    every = max(n // 10, 1)
    ref, k = reference(f, seed, n)
    curve, fixes = train(f.broken(seed), int(CAP * n), f.data, every, autofix=True, target=ref - POINTS, n=n)
    hit = next((t for t, v in curve if v >= ref - POINTS), None)
    at_n = next(v for t, v in curve if t >= n)
    acted = any(e["step"] <= n for e in fixes)
    broken = score_after(f.broken(seed), n, f.data) if acted else at_n
    final = curve[-1][1]
    harm = broken < ref - POINTS
    # a hit counts only if a fix that stayed (not undone) came before it: a slow run that reaches
    # the target in the extra steps past N without one was not fixed by autofix
    undone = {e.get("undo") for e in fixes} | {t for e in fixes for t in e.get("undone") or []}
    kept = [e["step"] for e in fixes if e["remedies"] and e["remedies"] != ["undo"] and e["step"] not in undone]
    by_fix = hit is not None and any(t < hit for t in kept)
    return Row(f.suite, f.name, seed, n, round(ref, 4), round(k, 3), ref >= chance(f.data) + 0.05, harm,
               hit is not None and final > broken and by_fix, None if hit is None else hit / n, round(broken, 4),
               round(at_n, 4), round(final, 4), curve[-1][0],
               [{"step": e["step"], "codes": e["codes"], "remedies": e["remedies"]} for e in fixes],
               round(time.process_time() - t0, 1))


def score_after(s: Setup, steps: int, kind: str) -> float:
    train(s, steps, None, steps, autofix=False)
    return score(s.model, kind)


def run_healthy(name: str, build: Callable[[int], Setup], seed: int) -> int:
    s = build(seed)
    _, fixes = train(s, s.steps, None, s.steps, autofix=True)
    for e in fixes:
        print(f"  FALSE ALARM {name}: {e['message']}", flush=True)
    return len(fixes)


# ---------------------------------------------------------------- main


def selected(a: argparse.Namespace) -> list[Fault]:
    fs = [f for f in faults() if not a.names or f.name in a.names]
    if a.shard:  # round-robin over the cost order: shards of about equal CPU
        k, m = (int(v) for v in a.shard.split("/"))
        fs = sorted(fs, key=lambda f: -COST_S.get(f.name, 0.0))[k::m]
    return fs


def list_faults(fs: list[Fault], measure: bool) -> None:
    """Print the fault set (dataset key, N, cost of N plain steps) and the exclusions."""
    for f in fs:
        s = f.broken(0)
        sec = COST_S.get(f.name)
        if measure:
            t = time.process_time()
            train(s, s.steps, None, s.steps, autofix=False)
            sec = time.process_time() - t
        cost = f"{sec:5.1f} s {cost_class(sec)}" if sec is not None else "unmeasured"
        print(f"{f.suite:9s} {f.name:36s} {f.data:11s} N {s.steps:4d}  {cost}", flush=True)
    print(f"\n{len(fs)} faults; excluded {len(EXCLUDED)}:")
    for name, why in EXCLUDED.items():
        print(f"  {name:36s} {why}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--only", choices=("faults", "healthy"), default=None)
    ap.add_argument("--shard", default=None, help="k/m: this process runs every m-th fault (and healthy run) from k")
    ap.add_argument("--json", default=None)
    ap.add_argument("--list", action="store_true", help="print the fault set and exit")
    ap.add_argument("--measure", action="store_true", help="with --list: time N plain steps of each")
    ap.add_argument("--merge", nargs="+", default=None,
                    help="summarise saved --json files (a later file's row replaces an earlier one)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if a.merge:
        summarize(*merged(a.merge), 0.0)
        return
    if a.list:
        list_faults(selected(a), a.measure)
        return
    t0 = time.process_time()
    rows: list[Row] = []
    actions: dict[str, int] = {}
    if a.only != "healthy":
        for f in selected(a):
            for seed in a.seeds:
                r = run_fault(f, seed)
                rows.append(r)
                fx = "; ".join(f"@{e['step']} {'+'.join(e['remedies']) or '-'}" for e in r.fixes) or "no action"
                verdict = ("(n/j)" if not r.judged else "(no harm)" if not r.harm
                           else "FIXED" if r.fixed else "not fixed")
                cost = f"{r.cost:.2f}x" if r.cost is not None else "-"
                print(f"{r.suite:9s} {r.name:36s} s{seed} ref {r.reference:.3f} (lr x{r.ref_lr_factor:.2f}) "
                      f"broken {r.broken:.3f} at N {r.at_budget:.3f} end {r.final:.3f} @{r.stopped} "
                      f"{verdict:9s} {cost:6s} {r.seconds:4.0f}s {fx}", flush=True)
    if a.only != "faults":
        k, m = (int(v) for v in (a.shard or "0/1").split("/"))
        for _suite, name, build in healthy()[k::m]:
            if a.names and name not in a.names:
                continue
            for seed in a.seeds:
                actions[f"{name}-s{seed}"] = run_healthy(name, build, seed)
                print(f"healthy   {name:36s} s{seed} actions {actions[f'{name}-s{seed}']}", flush=True)
    summarize(rows, actions, time.process_time() - t0)
    if a.json:
        Path(a.json).write_text(json.dumps({"faults": [asdict(r) for r in rows], "healthy": actions}, indent=1))


def merged(paths: list[str]) -> tuple[list[Row], dict[str, int]]:
    rows: dict[tuple, Row] = {}
    actions: dict[str, int] = {}
    for p in paths:
        d = json.loads(Path(p).read_text())
        for r in d["faults"]:
            rows[(r["name"], r["seed"])] = Row(**r)
        actions.update(d["healthy"])
    return list(rows.values()), actions


def _fraction(rows: list[Row]) -> str:
    fixed = [r for r in rows if r.fixed]
    return f"{len(fixed)}/{len(rows)} = {len(fixed) / len(rows):.1%}" if rows else "-"


def summarize(rows: list[Row], actions: dict[str, int], seconds: float) -> None:
    """Print the score: fraction fixed (overall, per suite, per seed), costs, healthy actions."""
    scored = [r for r in rows if r.scored]
    costs = [r.cost for r in scored if r.fixed]
    print()
    if rows:
        print(f"faults fixed (within {POINTS * 100:.0f} points of the tuned reference within {CAP}x N, "
              f"and better than broken): {_fraction(scored)}; excluded: "
              f"{sum(not r.judged for r in rows)} reference does not learn, "
              f"{sum(r.judged and not r.harm for r in rows)} no harm")
        for suite in ("scenarios", "realistic"):
            js = [r for r in scored if r.suite == suite]
            cs = [r.cost for r in js if r.fixed]
            if js:
                print(f"  {suite}: {_fraction(js)}, median cost {statistics.median(cs) if cs else math.nan:.2f}x")
        for seed in sorted({r.seed for r in rows}):
            print(f"  seed {seed}: {_fraction([r for r in scored if r.seed == seed])}")
        if costs:
            print(f"total steps / reference steps (fixed faults): median {statistics.median(costs):.2f}x, "
                  f"max {max(costs):.2f}x")
        print(f"faults where autofix acted: {sum(bool(r.fixes) for r in scored)}/{len(scored)}; fixed with no "
              f"action (the extra steps alone): {sum(r.fixed and not r.fixes for r in scored)}")
    if actions:
        print(f"healthy controls: {sum(actions.values())} actions on {len(actions)} runs "
              f"({sum(v > 0 for v in actions.values())} runs with any)")
        for seed in sorted({k.rsplit('-s', 1)[1] for k in actions}):
            ks = [v for k, v in actions.items() if k.endswith(f"-s{seed}")]
            print(f"  seed {seed}: {sum(v > 0 for v in ks)}/{len(ks)} runs with an action")
    if seconds:
        print(f"process time {seconds:.0f} s")


if __name__ == "__main__":
    main()
