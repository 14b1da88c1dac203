"""Autofix restarts a stuck post-LN run only when its tokens collapsed onto one vector.

``post-ln-no-warmup`` reads the records: post-LN blocks, no warm-up, full-size first steps, a
loss that has not moved and a gradient that fell. A model on an early plateau of a token-level
task reads the same at step 50, and a restart (weights back at the init, a warm-up to a third of
the rate) costs it the steps of the trial or leaves it at the lower rate. Held out (6-block
Hugging Face post-LN models, AdamW without warm-up, 300 steps): a 3+3 BART reversing sequences
at 1e-3 ended at 0.618 against 0.171 with no action, at 3e-4 3.90 against 3.27; a BERT masked
LM at 1e-3 4.56 against 3.47, a RoBERTa one 4.58 against 2.61. Their gradient at step 50 was
0.71-0.86 of its start, the benchmark's stuck faults' 0.47-0.81: no line between them.

What does separate them is the model itself: the stuck faults lost their input early. On the
latest batch, the median over the norm layers of ``row_spread`` (``measure.collapse``) reads 0.006-0.017
at step 10 on the stuck faults measured (seed 0: nn.TransformerEncoder post-LN with 6 (d=64), 8, 10,
12 and 16 layers, the zoo Transformer with 8, Adam 2e-3..1e-2) and 0.06-0.11 on four other seeds, one
of which then sits at chance with its tokens apart again (b-ttf-post12 seed 4: 0.10 at step 10,
0.47-0.96 from step 40 on: the smallest value seen counts); the Hugging Face runs above never read
under 0.59 in 100 steps (a unigram plateau still carries its tokens apart). A second held-out trial
(6-layer BERT/RoBERTa/ELECTRA masked LMs on a copy task, AdamW, no warm-up): at 3e-3 they sit at
chance and a restart takes them to 0.77-2.4 (from 4.58); their smallest spread reads 0.13-0.34. At
1e-3 they learn on their own (0.42-0.55), a restart leaves them at chance (4.56-4.57): 0.63-0.66. So
a ``post-ln-no-warmup`` error acts only where the smallest median spread seen at the checks up to
step ``LOOK_UNTIL`` is under ``COLLAPSED`` (first set at 0.25 from the first trial alone; the second
trial's 0.34 moved it to 0.45). Without a batch, a post-LN stack of too few blocks, a forward that
fails, or with surgery refused (DDP/FSDP, compiled), the finding stands as the records say; where
the gate holds a restart back, one event says so.

Example:
    >>> import types
    >>> from graddoctor.report import Finding
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
    >>> meta = {"layers": [{"name": "0", "kind": "linear"}, {"name": "1", "kind": "norm"}]}
    >>> gate = CollapseGate(net, types.SimpleNamespace(mapping=False), post_ln=lambda meta: True)
    >>> gate.look(10, meta, torch.randn(16, 4))
    >>> gate.confirm([Finding("post-ln-no-warmup", "error", "stuck")])
    []
"""

from __future__ import annotations

from typing import Any

import torch  # noqa: F401 - used by the doctest
from torch import nn

from graddoctor.diagnose.training.postln import post_ln_blocks
from graddoctor.measure.collapse import token_spread
from graddoctor.report import Finding

#: the smallest median token spread of the norm layers under which a post-LN stack has collapsed:
#: runs a restart repaired read <= 0.34, runs it harmed >= 0.59 (module docstring)
COLLAPSED = 0.45
#: the checks up to this step measure it (full-size first steps collapse a post-LN stack in its
#: first tens of steps); later ones read the records only, so a healthy post-LN model costs no
#: forward past it
LOOK_UNTIL = 100
CODE = "post-ln-no-warmup"


class CollapseGate:
    """The smallest token spread seen at the early checks, and the gate it makes.

    Args:
        root: the watched model.
        forwards: the watcher's forward machinery (its ``mapping`` flag is up during the forward:
            not a training forward).
        post_ln: meta -> whether the model is a post-LN stack (``postln.post_ln_blocks``).
        enabled: False where surgery is refused (DDP/FSDP-wrapped, compiled, TorchScript): no
            forward of the bare model there (an FSDP unit would gather its shards on one rank only).
    """

    def __init__(self, root: nn.Module, forwards: Any, post_ln: Any = post_ln_blocks, enabled: bool = True) -> None:
        self.root, self.forwards, self.post_ln, self.enabled = root, forwards, post_ln, enabled
        self.lowest: float | None = None  # None: not measured
        self._held: Finding | None = None  # a post-LN error held back, until ``held_back`` tells it
        self._told = False

    def look(self, step: int, meta: dict, inputs: Any) -> None:
        """Measure the spread on ``inputs`` at a check of ``step`` (<= ``LOOK_UNTIL``, a post-LN
        stack, no collapse seen yet); a forward that fails measures nothing."""
        if not self.enabled or step > LOOK_UNTIL or inputs is None or \
                (self.lowest is not None and self.lowest < COLLAPSED) or not self.post_ln(meta):
            return
        norms = [ly["name"] for ly in meta.get("layers", []) if ly.get("kind") == "norm"]
        self.forwards.mapping = True
        try:
            spread = token_spread(self.root, inputs, norms)
        except Exception:  # noqa: BLE001 - a forward that fails here: the records decide
            spread = None
        finally:
            self.forwards.mapping = False
        if spread is not None:
            self.lowest = spread if self.lowest is None else min(self.lowest, spread)

    def confirm(self, findings: list[Finding]) -> list[Finding]:
        """``findings`` without a ``post-ln-no-warmup`` error when the tokens were measured and
        never collapsed; a kept one gets the smallest spread in its evidence
        (``token_spread_min``)."""
        post = [f for f in findings if f.code == CODE and f.severity == "error"]
        if not post or self.lowest is None:
            return findings
        if self.lowest >= COLLAPSED:
            self._held = self._held or post[0]
            return [f for f in findings if f not in post]
        for f in post:
            f.evidence["token_spread_min"] = round(self.lowest, 4)
        return findings

    def held_back(self) -> tuple[Finding, float] | None:
        """The first ``post-ln-no-warmup`` error the gate held back and the smallest spread, once
        (the watcher says so in one event: the report keeps the error, and autofix did not act on
        it), else None."""
        if self._held is None or self._told:
            return None
        self._told = True
        return self._held, round(self.lowest or 0.0, 3)
