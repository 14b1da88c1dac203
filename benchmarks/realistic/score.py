"""Score the training-time rules on the realistic suite, per half of the architectures.

Half A (MLP, LSTM, graddoctor's zoo Transformer) is the calibration half: the thresholds of
the new rules and of the exploding/plateau changes were set looking at it only. Half B (conv
nets, GRU, ``nn.TransformerEncoder``) is held out. Per half: recall per code, false alarms
(any warning or error) on the healthy controls, the remedies the planner picks for each
fault (mechanism-matched: one of the case's ``remedies``), and each fault's harm against its
healthy twin (final training loss).

Usage:
    python benchmarks/realistic/score.py          # records missing runs first (cached)
    python benchmarks/realistic/score.py -v       # every run's findings
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from record import record  # noqa: E402
from runs import BY_NAME, CASES, build  # noqa: E402

from graddoctor.diagnose.training import training_findings  # noqa: E402
from graddoctor.fix.planner import plan  # noqa: E402

#: a fault is real when its final training loss is above HARM_RATIO x its twin's + HARM_MARGIN
HARM_RATIO, HARM_MARGIN = 1.5, 0.05


def score(half: str, verbose: bool = False) -> dict:
    cases = [c for c in CASES if c.half == half]
    codes = sorted({k for c in cases for k in c.expected})
    hits = {k: [0, 0] for k in codes}
    false_alarms, matched, faults, harmless = [], 0, 0, []
    rows = []
    for c in cases:
        r = record(c)
        fs = training_findings(r["meta"], r["steps"])
        got = {f.code for f in fs if f.severity in ("error", "warning")}
        twin = record(BY_NAME[c.twin])["final_loss"] if c.twin else None
        expected = set(c.expected)
        if twin is not None and not r["final_loss"] > HARM_RATIO * twin + HARM_MARGIN:
            expected = set()  # ground truth from the twin: the injected fault did no harm here
            harmless.append(c.name)
        for k in expected:
            hits[k][1] += 1
            hits[k][0] += k in got
        steps = []
        if c.fault == "none" or not expected:
            if got if c.fault == "none" else any(f.severity == "error" for f in fs):
                false_alarms.append(c.name)
        else:
            faults += 1
            steps = [s.remedy for s in plan(fs, build(c).model, build(c).example)]
            ok = bool(set(steps) & set(c.remedies)) if c.remedies else True
            matched += ok
        sev = ",".join(sorted(f"{f.code}:{f.severity[0]}" for f in fs)) or "-"
        rows.append((c.name, c.fault, sorted(expected), sev, steps, r["final_loss"], twin, r["seconds"]))
    print(f"\n== half {half} ({'calibration' if half == 'A' else 'held out'}): {len(cases)} runs")
    print(f"{'run':30s} {'expected':24s} {'found (e/w/i)':44s} {'loss':>6s} {'twin':>6s} {'sec':>5s}  plan")
    for name, _fault, exp, sev, steps, fl, tw, sec in rows:
        tws = f"{tw:6.3f}" if tw is not None else "     -"
        print(f"{name:30s} {','.join(exp) or '-':24s} {sev:44s} {fl:6.3f} {tws} {sec:5.1f}  {','.join(steps)}")
    out = {"recall": {k: (h, n) for k, (h, n) in hits.items()}, "false_alarms": false_alarms,
           "controls": sum(c.fault == "none" for c in cases), "remedy_match": (matched, faults)}
    print("recall per code: " + ", ".join(f"{k} {h}/{n}" for k, (h, n) in out["recall"].items()))
    big = {k: round(h / n, 2) for k, (h, n) in out["recall"].items() if n >= 5}
    print(f"recall of the codes with >= 5 positives: {big}")
    secs = sorted(r[-1] for r in rows)
    print(f"seconds per run (recording, 1 thread): median {secs[len(secs) // 2]:.1f}, max {secs[-1]:.1f}, "
          f"total {sum(secs):.0f}")
    print(f"false alarms on healthy controls: {len(false_alarms)}/{out['controls']} {false_alarms}")
    print(f"remedies matching the mechanism: {matched}/{faults}")
    print(f"faults without harm against their twin (scored as no-error runs): {harmless}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    for half in ("A", "B"):
        score(half, a.v)


if __name__ == "__main__":
    main()
