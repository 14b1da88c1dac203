"""The property-based run of ``tests/test_property.py`` with more examples and larger models:
random architectures through check, watch (5 steps) and repair; prints examples, failures and
seconds per example.

    PYTHONPATH=src python benchmarks/property.py --examples 2000 --max-units 600
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hypothesis import HealthCheck, given, settings  # noqa: E402

from property_models import archs, run_all  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=1000)
    ap.add_argument("--max-units", type=int, default=600, help="depth x width bound per model")
    ap.add_argument("--random", action="store_true", help="new examples each run (default: fixed seed)")
    args = ap.parse_args()
    seen = [0]

    @settings(max_examples=args.examples, derandomize=not args.random, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(archs(max_units=args.max_units))
    def prop(arch):
        seen[0] += 1
        run_all(arch)

    t0 = time.perf_counter()
    prop()  # raises with the smallest failing architecture
    dt = time.perf_counter() - t0
    print(f"{seen[0]} examples, 0 failures, {dt:.1f} s ({dt / max(seen[0], 1):.2f} s per example)")


if __name__ == "__main__":
    main()
