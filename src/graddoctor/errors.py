"""graddoctor's exceptions: each carries a one-line message that names the fix."""

from __future__ import annotations


class GraddoctorError(Exception):
    """Base class; the CLI prints ``str(err)`` on one line and exits 2."""


class InputError(GraddoctorError, ValueError):
    """Bad user input: example inputs, a path, a name, an option."""


class ModelCallError(GraddoctorError, RuntimeError):
    """The model's forward pass failed on the example inputs."""
