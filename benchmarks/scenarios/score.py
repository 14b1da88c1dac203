"""Score graddoctor's training-time rules on the labelled scenario suite.

Runs every scenario of ``scenarios.py`` under ``gd.watch`` (or reads records saved
with ``--save``), diagnoses the records with ``graddoctor.diagnose.training.training_findings`` and
prints, per finding code: recall, precision, the false-alarm rate on healthy
controls, and the median/max steps to first detection. Two step counts are
given: ``seen`` (the step the finding reports as first seen) and ``online``
(the fewest recorded steps after which ``training_findings`` on the run so far already
reports the code: what a live monitor would achieve). ``non-finite`` is an event:
its label for each run is read from the raw records (a NaN/Inf loss or gradient
on a step the optimizer took), the scenario's own label being the prediction.

Usage:
    python benchmarks/scenarios/score.py                  # seeds 0 and 1 (~2-3 min, 1 core)
    python benchmarks/scenarios/score.py --save runs.pkl  # also keep the records
    python benchmarks/scenarios/score.py --load runs.pkl  # re-score saved records
    python benchmarks/scenarios/score.py --only mlp20-sigmoid-sgd -v
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import pickle
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scenarios import SCENARIOS, TRAINING_CODES  # noqa: E402

from graddoctor.diagnose.training import training_findings  # noqa: E402


def raw_nonfinite(steps: list[dict]) -> bool:
    """Ground truth for non-finite, from the raw records: a NaN/Inf loss or gradient value on a
    step the optimizer took (an event, observed, not predicted)."""
    for s in steps:
        if s.get("skipped"):
            continue
        loss = s.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            return True
        if any((c or 0) > 0 for c in (s.get("nonfinite") or {}).values()):
            return True
    return False


def _with_truth(sc, steps: list[dict]):
    """The scenario with its non-finite label replaced by what the run's raw records show."""
    truth = set(sc.expected) - {"non-finite"}
    if raw_nonfinite(steps):
        truth.add("non-finite")
    return dataclasses.replace(sc, expected=frozenset(truth))


def online_step(meta: dict, steps: list[dict], code: str) -> int | None:
    """Step number of the shortest prefix of the run on which ``training_findings`` reports ``code``."""
    for k in range(1, len(steps) + 1):
        if any(f.code == code for f in training_findings(meta, steps[:k], rules=[code])):
            return int(steps[k - 1].get("step", k))
    return None


def score(records: dict[tuple[str, int], tuple[dict, list[dict]]], verbose: bool = False) -> dict:
    """Per-code and overall metrics over the runs given, keyed by (scenario name, seed)."""
    rows, nf_pred = [], []
    by_name = {sc.name: sc for sc in SCENARIOS}
    for (name, seed), (meta, steps) in sorted(records.items()):
        sc = by_name.get(name)
        if sc is None:
            continue
        predicted = sc.expected
        sc = _with_truth(sc, steps)
        nf_pred.append(("non-finite" in predicted, "non-finite" in sc.expected))
        findings = training_findings(meta, steps)
        got = {f.code for f in findings}
        first = {f.code: f.step for f in findings}
        online = {c: online_step(meta, steps, c) for c in got & sc.expected}
        rows.append((sc, got, first, online))
        if verbose or got != sc.expected:
            mark = "ok  " if got == sc.expected else "DIFF"
            print(f"{mark} {sc.name:32s} seed={seed} expected={sorted(sc.expected)} got={sorted(got)}")
            if verbose:
                for f in findings:
                    print(f"       {f.code} step={f.step} {f.message}")
    per_code = {}
    for code in TRAINING_CODES:
        tp = sum(code in sc.expected and code in got for sc, got, _, _ in rows)
        fn = sum(code in sc.expected and code not in got for sc, got, _, _ in rows)
        fp = sum(code not in sc.expected and code in got for sc, got, _, _ in rows)
        healthy = [got for sc, got, _, _ in rows if not sc.expected]
        seen = [first[code] for sc, got, first, _ in rows if code in sc.expected and code in got]
        onl = [o[code] for sc, got, _, o in rows if code in o and o[code] is not None]
        per_code[code] = {
            "positives": tp + fn, "tp": tp, "fn": fn, "fp": fp,
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "healthy_false_alarm": sum(code in g for g in healthy) / max(1, len(healthy)),
            "seen_median": statistics.median(seen) if seen else None,
            "seen_max": max(seen) if seen else None,
            "online_median": statistics.median(onl) if onl else None,
            "online_max": max(onl) if onl else None,
        }
    healthy = [got for sc, got, _, _ in rows if not sc.expected]
    all_seen = [first[c] for sc, got, first, _ in rows for c in sc.expected & got]
    all_onl = [v for *_, o in rows for v in o.values() if v is not None]
    overall = {
        "runs": len(rows), "scenarios": len({sc.name for sc, *_ in rows}), "healthy": len(healthy),
        "healthy_with_any_finding": sum(bool(g) for g in healthy),
        "false_alarm_rate": sum(bool(g) for g in healthy) / max(1, len(healthy)),
        "exact_match": sum(got == sc.expected for sc, got, _, _ in rows),
        "nonfinite_predicted": sum(p for p, _ in nf_pred),
        "nonfinite_predicted_and_observed": sum(p and o for p, o in nf_pred),
        "nonfinite_observed_unpredicted": sum(o and not p for p, o in nf_pred),
        "seen_median": statistics.median(all_seen) if all_seen else None,
        "seen_max": max(all_seen) if all_seen else None,
        "online_median": statistics.median(all_onl) if all_onl else None,
        "online_max": max(all_onl) if all_onl else None,
    }
    return {"per_code": per_code, "overall": overall}


def table(result: dict) -> str:
    """The markdown table printed by score.py."""
    def f(v, steps: bool = False) -> str:
        if v is None or v != v:
            return "-"
        if steps:
            return f"{v:g}"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    def st(m, k):
        return f"{f(m[k + '_median'], True)}/{f(m[k + '_max'], True)}"

    lines = ["| code | positives | recall | precision | false alarms (healthy) | "
             "steps seen median/max | steps online median/max |",
             "|---|---|---|---|---|---|---|"]
    for code, m in result["per_code"].items():
        lines.append(f"| {code} | {m['positives']} | {f(m['recall'])} | {f(m['precision'])} | "
                     f"{f(m['healthy_false_alarm'])} | {st(m, 'seen')} | {st(m, 'online')} |")
    o = result["overall"]
    lines.append(f"| **all** | {sum(m['positives'] for m in result['per_code'].values())} | | | "
                 f"{f(o['false_alarm_rate'])} ({o['healthy_with_any_finding']}/{o['healthy']} "
                 f"healthy runs with any finding) | {st(o, 'seen')} | {st(o, 'online')} |")
    lines.append(f"\n{o['runs']} runs of {o['scenarios']} scenarios ({o['healthy']} healthy-control "
                 f"runs); {o['exact_match']} runs with exactly the expected codes. non-finite "
                 f"labels come from the raw records: predicted by the scenario and observed in "
                 f"{o['nonfinite_predicted_and_observed']}/{o['nonfinite_predicted']} runs, observed "
                 f"unpredicted in {o['nonfinite_observed_unpredicted']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", help="write the records to this pickle")
    ap.add_argument("--load", help="score records from this pickle instead of training")
    ap.add_argument("--only", nargs="*", help="scenario names to run")
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1],
                    help="seeds (weights and batches) to run every scenario with (default: 0 1)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)
    if a.load:
        with open(a.load, "rb") as fh:
            records = pickle.load(fh)
    else:
        import torch
        from run import run_scenario

        torch.set_num_threads(1)
        records, t0 = {}, time.time()
        for seed in a.seeds:
            for sc in SCENARIOS:
                if a.only and sc.name not in a.only:
                    continue
                records[sc.name, seed] = run_scenario(sc, seed)
        print(f"ran {len(records)} scenarios in {time.time() - t0:.0f} s", file=sys.stderr)
        if a.save:
            with open(a.save, "wb") as fh:
                pickle.dump(records, fh)
    print(table(score(records, a.verbose)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
