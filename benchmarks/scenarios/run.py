"""Run one scenario under graddoctor.measure.monitor.watcher and return its records (meta, steps).

Example:
    python benchmarks/scenarios/run.py mlp20-sigmoid-sgd     # prints the report
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from scenarios import Scenario, by_name  # noqa: E402


def run_scenario(sc: Scenario, seed: int = 0, watch_kwargs: dict | None = None
                 ) -> tuple[dict, list[dict]]:
    """Train ``sc`` (weights and batches drawn with ``seed``) under ``gd.watch``; return its records."""
    import graddoctor as gd

    torch.manual_seed(seed)
    r = sc.build(seed)
    kw = dict(watch_kwargs or {})
    if r.scaler is not None:
        kw["scaler"] = r.scaler
    with gd.watch(r.model, optimizer=r.optimizer, example_inputs=r.example, **kw) as w:
        for t in range(r.steps):
            x, y = next(r.batches)
            loss = r.loss_fn(r.model(x), y)
            r.optimizer.zero_grad()
            if r.scaler is not None:
                overflow = r.overflow_every and t % r.overflow_every == r.overflow_every - 1
                r.scaler.scale(loss * math.inf if overflow else loss).backward()
                r.scaler.step(r.optimizer)
                r.scaler.update()
            else:
                loss.backward()
                r.optimizer.step()
            w.step(loss)
            if not math.isfinite(loss.item()) and len(w.records()[1]) > 5:
                break  # the run is dead; later steps carry no information
        return w.records()


def main() -> None:
    from graddoctor.diagnose.training import training_findings
    from graddoctor.report import Report

    torch.set_num_threads(1)
    for name in sys.argv[1:]:
        sc = by_name(name)
        meta, steps = run_scenario(sc)
        rep = Report(training_findings(meta, steps), source=f"watch:{name}")
        print(f"{name}: expected {sorted(sc.expected)}")
        print(rep)


if __name__ == "__main__":
    main()
