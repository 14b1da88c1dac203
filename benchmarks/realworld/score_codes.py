"""Recall and precision of each check-time code on the real-architecture suite, in two halves.

Healthy families are split in two halves (sorted, alternating), broken variants alternately; labels: a healthy model is negative for
every code, a broken variant positive for the codes of ``zoo_broken.LABELS``. A finding of any
severity counts. For the depth-trend codes the statistic behind the threshold is printed per
half (largest |orders| on the negatives, smallest on the positives): the margin a threshold
calibrated on one half keeps on the other.

Usage:
    python benchmarks/realworld/score_codes.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from check_suite import cases, run_case  # noqa: E402
from zoo_broken import LABELS  # noqa: E402

CODES = ("vanishing-gradient", "exploding-gradient", "signal-collapse", "signal-explosion", "poor-init",
         "deep-without-skip", "saturating-hidden-activation", "small-batch-batchnorm", "long-sequence-rnn")
STAT = {"vanishing-gradient": "orders_over_depth", "exploding-gradient": "orders_over_depth",
        "signal-collapse": "std_orders_over_depth", "signal-explosion": "std_orders_over_depth"}


def halves(all_cases) -> tuple[list, list]:
    """Healthy models by family (sorted, alternating); broken variants alternating in suite order."""
    healthy = [c for c in all_cases if c.healthy]
    broken = [c for c in all_cases if not c.healthy]
    fams = sorted({c.family for c in healthy})
    a = set(fams[0::2])
    return ([c for c in healthy if c.family in a] + broken[0::2],
            [c for c in healthy if c.family not in a] + broken[1::2])


def score(rows: list[tuple]) -> str:
    out = ["| code | positives | recall | precision | false alarms on healthy |", "|---|---|---|---|---|"]
    for code in CODES:
        pos = [r for r in rows if code in r[1]]
        found = [r for r in rows if code in r[2]]
        tp = [r for r in pos if code in r[2]]
        fa = [r for r in rows if r[0].healthy and code in r[2]]
        rec = f"{len(tp) / len(pos):.2f}" if pos else "-"
        prec = f"{len(tp) / len(found):.2f}" if found else "-"
        out.append(f"| {code} | {len(pos)} | {rec} | {prec} | {len(fa)}/{sum(r[0].healthy for r in rows)} |")
    return "\n".join(out)


def margins(rows: list[tuple]) -> str:
    out = []
    for code, key in STAT.items():
        prof = "grad" if "gradient" in code else "signal"
        neg = [abs(v) for r in rows if r[0].healthy for v in r[3].get(prof, [])]
        pos = [r[4].get(code) for r in rows if code in r[1] and r[4].get(code) is not None]
        out.append(f"- {code} ({key}): largest on healthy {max(neg, default=0):.2f}, smallest on positives "
                   f"{min(pos, default=float('nan')):.2f}")
    return "\n".join(out)


def _row(case) -> tuple:
    o, report = run_case(case)
    found = set(o.codes)
    labels = set() if case.healthy else LABELS[case.name]
    stats, healthy_stats = {}, {"grad": [], "signal": []}
    if report is not None:
        for f in report.findings:
            if f.code in STAT and STAT[f.code] in f.evidence:
                stats[f.code] = f.evidence[STAT[f.code]]
        healthy_stats = _trend_stats(report)
    return case, labels, found, healthy_stats, stats


def _trend_stats(report) -> dict:
    from graddoctor.diagnose.checktime.probe_rules import depth_trend, zero_gradient_layers

    p = report.data.get("probe") or {}
    names, g = p.get("layers", []), p.get("grad_rms", [])
    _, skip = zero_gradient_layers(names, g, p.get("zero_params", []))
    kept = [(n, v) for n, v in zip(names, g) if n not in set(skip) and v != 0.0]
    tg = depth_trend([n for n, _ in kept], [v for _, v in kept])
    ts = depth_trend(names, p.get("act_var", []))
    return {"grad": [tg["orders"]] if tg else [], "signal": [ts["orders"] / 2] if ts else []}


def main() -> int:
    torch.set_num_threads(1)
    a, b = halves(cases())
    for title, half in (("half A", a), ("half B", b)):
        rows = [_row(c) for c in half]
        fams = sorted({c.family for c in half})
        print(f"### {title}: {sum(c.healthy for c in half)} healthy, {sum(not c.healthy for c in half)} broken; "
              f"families {', '.join(fams)}\n")
        print(score(rows))
        print()
        print(margins(rows))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
