"""Fix: the planner, repair, autofix and the remedy registry."""

from graddoctor.fix import autofix  # noqa: F401 - registers gd.watch(..., autofix=True)
