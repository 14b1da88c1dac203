"""The severity policy and the mechanism findings that explain others (see ``thresholds``).

``apply_policy(findings, steps)``, run by ``training_findings`` after the rules:

1. A mechanism finding (``batchnorm-eval-mode``, ``clip-too-tight``, ``post-ln-no-warmup``)
   explains the plateau (not a clip whose steps did not shrink: evidence ``steps_shrunk`` False,
   whose severity stays its rule's) and the weak gradients of its run: ``loss-plateau``,
   ``vanishing-gradient`` and ``stalled-layers`` are dropped when one is present (their
   remedies would treat the symptom: a norm insertion for a net whose BatchNorm is in eval
   mode, he-init for a post-LN Transformer that needs a warm-up).
2. Harm: a ``loss-plateau`` finding, or a loss that has not moved (``progress``), unless the loss
   fell later in the run (``progress.left_plateau``: the plateau stays, a warning when it has a
   gradient-flow cause, else info: a parity MLP and a gated GRU on a 100-step memory task sat
   50-120 steps at chance, then solved their tasks), or a finding
   whose evidence says the loss stayed flat after a first fall to the class prior
   (``stuck_after_settling``, post-ln-no-warmup). A start-up transient (evidence ``transient``)
   and a clip whose steps did not shrink keep their rule's severity and cause nothing. With harm,
   every gradient-flow cause (``GRADIENT_FLOW_CODES``) is an error, and so is a plateau that
   has one; without harm a cause is a warning (on runs long enough to tell: ``progress.MIN_STEPS``
   losses; shorter runs keep each rule's own severity), except an exploding gradient that blew up
   over steps (evidence ``blowup_step``) or overflowed, which is harm in itself.
3. A plateau with no gradient-flow cause names the data, the labels or the learning rate (and
   the frozen weight layers, when there are: a part the user forgot to unfreeze learns nothing;
   keep gates with a short memory); in a run that steps several optimizers it is info.

Example:
    >>> from graddoctor.report import Finding
    >>> fs = [Finding("saturated-activation", "warning", "tanh pinned", ["1"]),
    ...       Finding("loss-plateau", "warning", "flat", [], {"gradient_evidence": "saturated"})]
    >>> [(f.code, f.severity) for f in apply_policy(fs, [])]
    [('saturated-activation', 'error'), ('loss-plateau', 'error')]
"""

from __future__ import annotations

from dataclasses import replace

from graddoctor.diagnose.thresholds import GRADIENT_FLOW_CODES, HARM_SEVERITY
from graddoctor.diagnose.training.progress import left_plateau, loss_progress
from graddoctor.report import Finding

#: mechanism code -> the symptom codes it explains
EXPLAINS = {code: ("loss-plateau", "vanishing-gradient", "stalled-layers")
            for code in ("batchnorm-eval-mode", "clip-too-tight", "post-ln-no-warmup")}

NO_CAUSE = ("no gradient-flow cause in the records (gradients reach every trainable layer at a "
            "healthy scale): suspect the data or the labels (shuffled, noisy or unlearnable), or the "
            "learning rate")
#: added to ``NO_CAUSE`` when weight layers are frozen (``frozen_weight_layers`` in the evidence)
FROZEN = ("; {frozen_weight_layers} of {weight_layers} weight layers are frozen (requires_grad=False) and cannot learn: "
          "unfreeze them unless that is meant (a pretrained part)")


#: ... and when a weight layer is applied 3+ times per forward (``reused_layer`` in the evidence)
REUSED = ("; {reused_layer!r} is applied {reused_calls} times per forward: its gradient sums every call's, so a "
          "healthy total can hide first calls that get none - gd.check(model, batch) measures each call")


#: ... and when LSTM/GRU keep gates started with a memory far shorter than the sequence
#: (``short_memory_layers`` in the evidence)
SHORT_MEMORY = ("; the keep gates of {layers} started with a memory of ~{memory_steps:.0f} steps on sequences of "
                "{seq_len} steps: what the loss needs from further back reaches them weakly - start the gates "
                "open (forget-bias: bias +1, Jozefowicz et al. 2015)")


#: ... and when the run steps several optimizers (``several_optimizers``): the plateau is info
ADVERSARIAL = ("; the run steps several optimizers, so the loss watched may be one of competing objectives "
               "(a GAN's generator loss need not fall): info, not a fault by itself")


#: ... and when no step holds activation statistics (not sampled: Lightning's training_step
#: calling a submodule, ``activation_every=0``)
UNSAMPLED = ("; activations were not sampled in this run, so dead or saturated units are not ruled out")


def _blew_up(f: Finding) -> bool:
    return f.code == "exploding-gradient" and ("blowup_step" in f.evidence or "overflowed_layers" in f.evidence)


def apply_policy(findings: list[Finding], steps: list[dict]) -> list[Finding]:
    """The findings after the three steps of the module docstring (a new list)."""
    # a clip whose steps did not shrink (an adaptive optimizer rescaled them) explains nothing
    codes = {f.code for f in findings if f.evidence.get("steps_shrunk") is not False}
    drop = {c for m, cs in EXPLAINS.items() if m in codes for c in cs}
    kept = [f for f in findings if f.code not in drop]
    plateau = next((f for f in kept if f.code == "loss-plateau"), None)
    # a start-up transient (evidence ``transient``) is the cause of nothing
    causes = [f for f in kept if f.code in GRADIENT_FLOW_CODES and not f.evidence.get("transient")]
    prog = loss_progress(steps)
    later = left_plateau(steps)  # stuck early, but the loss fell later on: a slow start
    # a post-LN net whose loss fell to the class prior and stayed there learnt nothing either
    harm = ((plateau is not None or prog["stuck"]) and later is None
            or any(f.evidence.get("stuck_after_settling") for f in kept))
    judged = harm or prog["judged"]  # too short a run to say: each rule's own severity stands
    out = []
    for f in kept:
        if f.evidence.get("steps_shrunk") is False or f.evidence.get("transient"):
            pass  # its rule's own severity (info unless the loss is stuck)
        elif f.code in GRADIENT_FLOW_CODES and not _blew_up(f) and judged:
            f = replace(f, severity=HARM_SEVERITY[harm])
        elif f.code == "loss-plateau":
            why = f.evidence.get("gradient_evidence")
            has_cause = bool(causes) or why not in (None, "tiny-steps")
            if later is not None:  # with no gradient-flow cause, a slow start the run got over: info
                f = replace(f, severity="warning" if has_cause else "info",  # (a parity MLP, a gated GRU)
                            evidence={**f.evidence, "loss_end": round(later, 4)},
                            message=f"{f.message}; the run left the plateau later (loss {later:.4g} at the end): "
                                    "a slow start that cost those steps" + ("" if has_cause else
                                                                           " (no gradient-flow cause found: a saddle the "
                                                                           "net escaped, or a learning rate too low)"),
                            remedies=f.remedies if has_cause else ["lr-find"])
            elif has_cause:
                f = replace(f, severity="error")
            elif NO_CAUSE not in f.message:
                frozen = FROZEN.format(**f.evidence) if f.evidence.get("frozen_weight_layers") else ""
                frozen += "" if any(x.get("act") for x in steps) else UNSAMPLED
                frozen += REUSED.format(**f.evidence) if f.evidence.get("reused_layer") else ""
                ev = f.evidence
                gates = ["forget-bias"] if ev.get("short_memory_layers") else []
                memory = SHORT_MEMORY.format(layers=", ".join(repr(n) for n in ev["short_memory_layers"][:3]),
                                             memory_steps=ev["memory_steps"], seq_len=ev["seq_len"]) if gates else ""
                f = replace(f, message=f"{f.message}{memory}; {NO_CAUSE}{frozen}",
                            remedies=gates + ([r for r in f.remedies if r in ("lr-find", "lower-lr")] or ["lr-find"]))
                if ev.get("several_optimizers"):  # one of several objectives: an adversarial one holds
                    f = replace(f, severity="info", message=f"{f.message}{ADVERSARIAL}")
        out.append(f)
    return out


__all__ = ["ADVERSARIAL", "EXPLAINS", "FROZEN", "NO_CAUSE", "REUSED", "SHORT_MEMORY", "UNSAMPLED", "apply_policy"]
