"""Property-based: random architectures (``tests/property_models.py``: depth 1-60, widths
1-128, plain and in-place activations, norms, dropout, residual blocks, init scales
1e-3..1e2, float32/float64/bfloat16) go through check, watch (5 steps) and repair: nothing
raises, nothing is left behind (hooks, modes, grads, RNG, inputs), the repaired model runs.

A fixed seed (``derandomize=True``) and a fixed count: ``PROPERTY_EXAMPLES`` (default 300, the
issue's count: 80 s of CPU on this 2-core machine with the suite's one torch thread; depth is
drawn from 1-12 or 13-60 with equal odds, see ``archs``); more in ``benchmarks/property.py``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings

from property_models import archs, run_all

EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "300"))


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(archs(max_units=128))
def test_check_watch_repair_on_random_architectures(arch):
    run_all(arch)
