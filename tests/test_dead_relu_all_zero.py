"""dead-relu: a site all zeros on every sampled batch is dead, whatever its lagging ``dead_frac``.

The dead-unit window is 10 samples; in a short run they reach back to before the units died (a
3-layer ReLU MLP killed at step 29 by SGD 0.5: zero_frac 1.00 from step 64, dead_frac 0.11 at 301).
"""

from __future__ import annotations

from graddoctor.diagnose.training.activations import dead_relu

META = {"activations": [{"name": "5", "kind": "relu", "family": "relu", "is_output": False}]}


def _steps(zero: float, dead: float) -> list[dict]:
    return [{"step": t, "act": {"5": {"zero_frac": zero, "dead_frac": dead}}} for t in (64, 101, 201, 301)]


def test_an_all_zero_site_is_dead() -> None:
    (f,) = dead_relu(META, _steps(1.0, 0.11))
    assert f.code == "dead-relu" and f.severity == "error" and f.layers == ["5"] and f.step == 64
    assert "only zeros on every sampled batch from step 64 to the end" in f.message


def test_a_site_that_recovers_is_not_dead() -> None:
    steps = [{"step": t, "act": {"5": {"zero_frac": z, "dead_frac": 0.02}}}
             for t, z in zip((8, 16, 32, 64, 101, 201), (1.0, 1.0, 0.5, 0.5, 0.5, 0.5))]
    assert dead_relu(META, steps) == []


def test_a_healthy_site_half_zeros_is_not() -> None:
    assert dead_relu(META, _steps(0.55, 0.02)) == []
    assert dead_relu(META, _steps(0.98, 0.02)) == []  # mostly zeros, some units fire: the window decides
