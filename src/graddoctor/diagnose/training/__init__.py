"""Training-time rules: watch's statistics in, findings out.

(The check-time rules, static audit and init probe, are ``graddoctor.diagnose.checktime``.)
``training_findings(meta, steps)`` (public name ``gd.rules.diagnose``, kept as
``diagnose``) runs every rule of ``TRAINING_RULES`` (finding code -> function), as
``static_findings`` and ``probe_findings`` run the check-time ones, over the records of one run (``Watcher.records()`` or
``graddoctor.runlog.read_run``). Each rule is a small pure function in a file
per family: ``gradients`` (vanishing, exploding, stalled; ``through_time`` for a
vanilla RNN; ``forget_gate`` for an LSTM/GRU whose keep gate is closed), ``nonfinite``, ``activations`` (dead ReLU, saturation), ``loss``
(plateau), ``batchnorm`` (eval mode), ``clipping`` (clip too tight), ``postln`` (post-LN
without warm-up), ``unreached`` (trainable layers no gradient reaches), ``init_loss`` (weights off scale at the start and a loss still above a uniform guess); ``policy`` applies the severity policy of ``thresholds``. ``series`` pulls arrays out of the records and ``sites`` picks the layers
and activation sites a rule reads. A threshold used by one rule is documented next to
it with the paper it rests on; one shared by several is in
``graddoctor.diagnose.thresholds``. A rule that raises is a bug: the error propagates.

Example:
    >>> meta = {"layers": [{"name": "0", "kind": "linear"}], "activations": []}
    >>> steps = [{"step": 0, "loss": 2.3, "grad_norm": {"0": 0.1}, "weight_norm": {"0": 1.0}},
    ...          {"step": 1, "loss": float("inf"), "grad_norm": {"0": 0.1}, "weight_norm": {"0": 1.0}}]
    >>> [f.code for f in training_findings(meta, steps)]
    ['non-finite']
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from graddoctor.diagnose.training.activations import dead_relu, saturated_activation
from graddoctor.diagnose.training.batchnorm import batchnorm_eval_mode
from graddoctor.diagnose.training.chance import plateau_or_chance
from graddoctor.diagnose.training.clipping import clip_too_tight
from graddoctor.diagnose.training.forget_gate import vanishing_gradient_through_gates
from graddoctor.diagnose.training.gradients import _blowup, exploding_gradient, stalled_layers
from graddoctor.diagnose.training.init_loss import init_loss
from graddoctor.diagnose.training.never_cleared import name_never_cleared
from graddoctor.diagnose.training.nonfinite import non_finite
from graddoctor.diagnose.training.policy import apply_policy
from graddoctor.diagnose.training.postln import post_ln_no_warmup
from graddoctor.diagnose.training.series import nonfinite_step
from graddoctor.diagnose.training.softmax_output import softmax_loss_range
from graddoctor.diagnose.training.unreached import no_gradient
from graddoctor.errors import InputError
from graddoctor.report import Finding

Rule = Callable[[dict, list[dict]], list[Finding]]

#: finding code -> rule over (meta, steps); add a rule here to have training_findings run it
TRAINING_RULES: dict[str, Rule] = {
    "vanishing-gradient": vanishing_gradient_through_gates,
    "exploding-gradient": exploding_gradient,
    "non-finite": non_finite,
    "dead-relu": dead_relu,
    "saturated-activation": saturated_activation,
    "stalled-layers": stalled_layers,
    "loss-plateau": plateau_or_chance,
    "batchnorm-eval-mode": batchnorm_eval_mode,
    "clip-too-tight": clip_too_tight,
    "post-ln-no-warmup": post_ln_no_warmup,
    "no-gradient": no_gradient,
    "poor-init": init_loss,
    "softmax-before-loss": softmax_loss_range,
}


def training_findings(meta: dict, steps: list[dict], rules: list[str] | None = None) -> list[Finding]:
    """Run the training-time rules on one run's records.

    Args:
        meta: the run log's meta record (layers, activations, config).
        steps: the step records, in step order.
        rules: codes to run (default: all of ``TRAINING_RULES``).

    Returns:
        The findings, in the order of ``TRAINING_RULES``, after the severity policy
        (``policy.apply_policy``: harm makes a gradient-flow cause an error).

    Raises:
        InputError: records that are not a meta dict and a list of step dicts, or an
            unknown rule code. Any error of a rule propagates.

    Example:
        >>> training_findings({"layers": [], "activations": []}, [])
        []
    """
    if not isinstance(meta, dict) or not isinstance(steps, (list, tuple)):
        raise InputError("training_findings(meta, steps) takes watch's records: a meta dict and a list of "
                         "step dicts (use Watcher.records() or graddoctor.runlog.read_run(path))")
    if any(not isinstance(s, dict) for s in steps):
        raise InputError("training_findings: every step record must be a dict (one JSON object per step line)")
    unknown = sorted(set(rules or ()) - set(TRAINING_RULES))
    if unknown:
        raise InputError(f"unknown training rule(s) {unknown}; known: {sorted(TRAINING_RULES)}")
    steps = sorted(steps, key=lambda s: s.get("step", 0))
    with warnings.catch_warnings():  # numpy's all-NaN / empty-slice notes: the rules expect NaN
        warnings.filterwarnings("ignore", r"(All-NaN slice|Mean of empty slice)", RuntimeWarning)
        return _run_rules(meta, steps, rules or list(TRAINING_RULES))


def _run_rules(meta: dict, steps: list[dict], rules: list[str]) -> list[Finding]:
    cut = first_nonfinite(steps)
    blow = blowup_step(meta, steps[: cut + 1])
    wreck = next((i for i, s in enumerate(steps) if blow is not None and s.get("step", 0) >= blow),
                 cut)
    out: list[Finding] = []
    for code in rules:
        # after the first NaN or blow-up the statistics describe the wreck, not the model:
        # the other rules read the run up to it
        if code == "non-finite":
            seen = steps
        elif code == "exploding-gradient":
            seen = steps[: cut + 1]
        else:
            seen = steps[: min(cut, wreck)]
        out.extend(TRAINING_RULES[code](meta, list(seen)))
    return name_never_cleared(apply_policy(out, steps[: min(cut, wreck)]), meta, steps[: cut + 1],
                              add="exploding-gradient" in rules)


#: the public name since 0.1 (``gd.rules.diagnose``)
diagnose = training_findings


def blowup_step(meta: dict, steps: list[dict]) -> int | None:
    """Step at which the gradient norm blew up over steps (see ``gradients._blowup``), or None."""
    f = _blowup(meta, steps)
    return None if f is None else f.step


def first_nonfinite(steps: list[dict]) -> int:
    """Index of the first non-skipped step with a non-finite loss or gradient (len if none).

    Example:
        >>> first_nonfinite([{"loss": 1.0}, {"loss": "nan"}, {"loss": 1.0}])
        1
    """
    for i, s in enumerate(steps):
        if not s.get("skipped", False) and nonfinite_step(s):
            return i
    return len(steps)


__all__ = ["TRAINING_RULES", "Rule", "diagnose", "training_findings"]
