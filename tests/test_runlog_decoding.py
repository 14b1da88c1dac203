"""Run-log numbers are decoded one way everywhere: "nan"/"inf"/"-inf" strings (any case) are
non-finite, null is "nothing recorded"; plots and training rules agree on both."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graddoctor as gd
from graddoctor import runlog
from graddoctor.diagnose.training.series import matrix as rules_matrix

VALUES = [3, "NaN", "-inf", float("inf"), None, "tanh", 0.5]


def test_as_float_and_is_nonfinite():
    """``as_float``: numbers and non-finite strings decoded, anything else nan; ``is_nonfinite``:
    only recorded NaN/Inf, never null or other text."""
    assert math.isnan(runlog.as_float(None)) and math.isnan(runlog.as_float("x"))
    assert runlog.as_float(3) == 3.0 and runlog.as_float("-inf") == -math.inf
    assert [runlog.is_nonfinite(v) for v in ("NaN", "-inf", float("inf"), 0.0, None, "tanh")] == \
        [True, True, True, False, False, False]


def test_plots_and_rules_read_a_layer_series_alike():
    """The same per-layer series gives the same numbers to the plots and to the rules; the plots
    mark exactly the recorded NaN/Inf values as non-finite."""
    steps = [{"step": i, "grad_norm": {"a": v}} for i, v in enumerate(VALUES)]
    _, drawn, bad = gd.plots.matrix(steps, "grad_norm", ["a"])
    judged = rules_matrix(steps, "grad_norm", ["a"])[:, 0]
    assert bad[0].tolist() == [False, True, True, True, False, False, False]
    np.testing.assert_array_equal(judged, [3.0, math.nan, -math.inf, math.inf, math.nan, math.nan, 0.5])
    np.testing.assert_array_equal(drawn[0][~bad[0]], judged[~bad[0]])


@pytest.mark.parametrize("loss", ["NaN", "nan", "-inf", "INF", float("nan")])
def test_plots_and_rules_flag_the_same_nonfinite_loss(loss):
    """A non-finite loss, as a float or as any of its JSON strings, is a ``non-finite`` finding
    at that step and the one NaN/Inf mark of the loss curve."""
    meta = {"layers": [{"name": "0", "kind": "linear", "trainable": True}], "activations": []}
    steps = [{"step": s, "loss": loss if s == 2 else 1.0, "grad_norm": {"0": 0.1},
              "weight_norm": {"0": 1.0}} for s in (1, 2, 3)]
    assert [(f.code, f.step) for f in gd.rules.diagnose(meta, steps)] == [("non-finite", 2)]
    ax = gd.plots.loss_curve((meta, steps)).axes[0]
    marks = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert marks == {"NaN/Inf loss": [2.0]}
