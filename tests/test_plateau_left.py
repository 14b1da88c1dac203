"""A run stuck on a plateau early that leaves it later (an LSTM whose forget gate starts at -5:
flat at ln 4 for ~175 steps, then it learns to 0.77): the plateau and its cause stay in the
report, as warnings, with the final loss; before, both were errors and ``report.ok`` was False
on a run that ended well. A plateau left later with no gradient-flow cause is info.
"""

from __future__ import annotations

from graddoctor.diagnose.training.policy import apply_policy
from graddoctor.diagnose.training.progress import left_plateau
from graddoctor.report import Finding


def _steps(escape: int | None, n: int = 300) -> list[dict]:
    return [{"step": t, "loss": 1.386 if escape is None or t < escape else 0.77} for t in range(1, n + 1)]


def _findings() -> list[Finding]:
    return [Finding("vanishing-gradient", "warning", "closed gate", ["lstm"]),
            Finding("loss-plateau", "warning", "flat", [], {"gradient_evidence": "closed-gate"})]


def test_a_plateau_left_later_is_a_warning_with_the_final_loss():
    out = {f.code: f for f in apply_policy(_findings(), _steps(escape=175))}
    assert out["loss-plateau"].severity == "warning" and out["vanishing-gradient"].severity == "warning"
    assert "left the plateau later (loss 0.77" in out["loss-plateau"].message
    assert out["loss-plateau"].evidence["loss_end"] == 0.77


def test_a_plateau_left_later_with_no_cause_is_info():
    """A parity MLP (0.694 for ~50 steps, then 100% accuracy) and a gated GRU on a 100-step memory
    task (chance for ~120 steps, then 100%) read a loss-plateau warning with lr-find, batchnorm
    and he-init: a slow start with no gradient-flow cause is info, with lr-find only."""
    bare = [Finding("loss-plateau", "warning", "flat", [], {"gradient_evidence": None}, ["lr-find", "batchnorm"])]
    (f,) = apply_policy(bare, _steps(escape=175))
    assert f.severity == "info" and f.remedies == ["lr-find"]
    assert "no gradient-flow cause found" in f.message and f.evidence["loss_end"] == 0.77


def test_a_plateau_never_left_is_still_an_error():
    out = {f.code: f for f in apply_policy(_findings(), _steps(escape=None))}
    assert out["loss-plateau"].severity == "error" and out["vanishing-gradient"].severity == "error"


def test_left_plateau_reads_past_the_early_window_only():
    assert left_plateau(_steps(escape=175)) == 0.77
    assert left_plateau(_steps(escape=None)) is None
    assert left_plateau(_steps(escape=175, n=100)) is None  # no step past the early window
    assert left_plateau(_steps(escape=50)) is None  # it fell inside the window: not a late escape


def test_a_plateau_with_no_cause_says_when_activations_were_not_sampled():
    from graddoctor.diagnose.training.policy import UNSAMPLED
    plateau = [Finding("loss-plateau", "warning", "flat", [], {"gradient_evidence": None})]
    (bare,) = apply_policy(plateau, _steps(escape=None))
    assert UNSAMPLED in bare.message
    sampled = [dict(s, act={"1": {"zero_frac": 0.5}}) if s["step"] == 64 else s for s in _steps(escape=None)]
    (seen,) = apply_policy(plateau, sampled)
    assert UNSAMPLED not in seen.message
