"""A misspelt ``GradDoctorCallback`` option is one ``InputError`` line when the callback is made
(as ``gd.watch`` gives), not a ``TypeError`` from inside the trainer at fit start."""

from __future__ import annotations

import pytest

from graddoctor.errors import InputError


def _callbacks():
    found = []
    for module in ("graddoctor.integrations.lightning", "graddoctor.integrations.transformers"):
        try:
            found.append(__import__(module, fromlist=["GradDoctorCallback"]).GradDoctorCallback)
        except InputError:  # the framework is not installed
            pass
    return found


CALLBACKS = _callbacks()


@pytest.mark.skipif(not CALLBACKS, reason="neither Lightning nor transformers installed")
@pytest.mark.parametrize("cb", CALLBACKS, ids=lambda c: c.__module__.rsplit(".", 1)[-1])
def test_misspelt_option_is_one_clear_line(cb):
    with pytest.raises(InputError, match=r"unknown argument 'flushevery' \(did you mean 'flush_every'\?\)"):
        cb(flushevery=10)
    with pytest.raises(InputError, match="'max_fixes' is an autofix option - pass autofix=True"):
        cb(max_fixes=1)
    with pytest.raises(InputError, match="'optimizers' comes from the trainer"):
        cb(optimizers=[])
    with pytest.raises(InputError, match="options: .*flush_every"):
        cb(zzzzzz=1)
    cb(flush_every=10, activation_every=5, sinks=["jsonl"])  # valid options pass
    cb(autofix=True, max_fixes=1, example_inputs=None)
