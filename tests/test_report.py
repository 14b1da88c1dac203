"""Report and Finding, and the shared formatting helpers of graddoctor.report."""

from __future__ import annotations

import json
import math

import pytest
import torch

from graddoctor.report import Finding, Report, format_names, format_value, jsonable


def test_finding_refuses_unknown_code_and_severity():
    with pytest.raises(ValueError, match="unknown finding code"):
        Finding("no-such-code", "error", "x")
    with pytest.raises(ValueError, match="severity"):
        Finding("non-finite", "fatal", "x")


def test_report_round_trips_through_json_with_non_finite_evidence():
    r = Report([Finding("exploding-gradient", "warning", "big", ["0"], {"ratio": math.inf}),
                Finding("non-finite", "error", "nan", evidence={"loss": math.nan})], "watch",
               {"series": torch.tensor([1.0, 2.0])})
    d = json.loads(r.to_json())
    assert d["findings"][0]["code"] == "non-finite" and d["findings"][1]["evidence"] == {"ratio": "inf"}
    assert d["data"] == {"series": [1.0, 2.0]} and d["ok"] is False
    back = Report.from_dict(d)
    assert back.codes == r.codes and back.source == "watch" and not back.ok


def test_jsonable_gives_strict_json():
    obj = {1: (math.nan, -math.inf), "s": {2}, "t": torch.tensor(3), "o": object}
    out = jsonable(obj)
    json.dumps(out, allow_nan=False)
    assert out["1"] == ["nan", "-inf"] and out["s"] == [2] and out["t"] == 3


def test_format_helpers():
    assert format_names(["", "a"]) == "<model>, a"
    assert format_names(list("abcdef"), keep=2) == "a, b, ... (+4)"
    assert format_value(1 / 3) == "0.333" and format_value("x") == "x"
    assert format_value(tuple(range(7))) == "[0, 1, 2, ... (7 values)]"
