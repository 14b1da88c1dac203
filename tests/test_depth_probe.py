"""check at any depth (issue 20): gradients that underflow float32 to exact zero on the main
path are vanishing; a healthy residual net of the same depth gets no such finding.

The probe's rescaled backward (``measure/probe_scale.py``) measures the 10,000-layer sigmoid
chain's gradient to the input side (thousands of orders below float32's range); the check's
time is measured in ``benchmarks/depth.py``, not here."""

from __future__ import annotations

import graddoctor as gd
from graddoctor import data, zoo

X = data.load("digits", seed=0).x_train[:64]
DEPTH = 10_000


def test_gradients_that_underflow_to_zero_are_vanishing_with_the_depth_they_vanished_at() -> None:
    net = zoo.mlp(depth=DEPTH, width=32, activation="sigmoid", seed=0)
    found = [f for f in gd.check(net, X, jacobian_k=0).findings if f.code == "vanishing-gradient"]
    assert found and found[0].severity == "error"
    assert "float32" in found[0].message or "float32" in str(found[0].evidence)
    ev = found[0].evidence
    # measured to the input side, not read as zeros: ~0.85 orders per layer at PyTorch's default init
    assert ev["orders_over_depth"] > 1000 and ev["zero_gradient_input_side"] == 0
    # float32 ends ~45 orders below the output side's gradient: some 50 layers from the output
    assert ev["below_dtype_range_layers"] > 9000 and 20 <= ev["below_range_depth_from_output"] <= 200


def test_a_healthy_rezero_net_of_the_same_depth_has_no_vanishing_finding() -> None:
    net = zoo.mlp(depth=DEPTH, width=32, activation="relu", init="he", residual="rezero", seed=0)
    codes = {f.code for f in gd.check(net, X, jacobian_k=0).findings}
    assert "vanishing-gradient" not in codes and "exploding-gradient" not in codes
