"""Measure: pure statistics, the init probe, distributed reductions and the training monitor."""
