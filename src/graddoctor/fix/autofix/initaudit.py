"""``InitAudit``: autofix's look at the weights before training moves them.

The ``poor-init`` audit (``init_fault``) runs once: at attach on the example
inputs, or else at the first forward of the model (its forward pre-hook ``keep_inputs``, which
also keeps the latest batch for the remedies that trace the model). The first forward comes
before the first step, so the weights are still the attach-time ones: after a step, a rate
that blew up would look like a bad init. The traced forward is not a training forward (the
watcher's ``forwards.mapping`` flag is up meanwhile). Weights that look trained
(``measure.trained.looks_trained``: loaded from a checkpoint, or trained before watch attached) are no
init: their faults are dropped. An audit that fails warns and autofix goes on without it.

Example:
    >>> import torch, types
    >>> from torch import nn
    >>> net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.ReLU())])
    >>> audit = InitAudit(net, None, types.SimpleNamespace(mapping=False), lambda: 2)
    >>> _ = net.register_forward_pre_hook(audit.keep_inputs, with_kwargs=True)
    >>> _ = net(torch.randn(4, 16)); [f.code for f in audit.faults]
    ['poor-init']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

from torch import nn

from graddoctor.diagnose.checktime.init_scale import ACT_ENTROPY, init_fault, output_classes
from graddoctor.inputs import bind_call
from graddoctor.measure.trained import looks_trained
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

#: a model whose first loss is under this fraction of ln(classes) (a uniform guess over its
#: output's last axis: the vocabulary, the classes) has learnt: what the audit reads is a trained
#: model's scale, not an init, and autofix does not act on it at the first check (the training-time
#: rules still act if the run then fails). Measured: 2-layer HF models, vocabulary 128 (ln 128 =
#: 4.85), drawn at ``initializer_range`` 0.5 / 1.0 start at 10.5-11.9 / 19.9-22.8 (Llama, Mistral,
#: Gemma, GPT-2, BERT, DistilBERT, BART; DeiT on 4 classes 5.5 / 8.5), 2.2-4.7 times ln(classes);
#: the suites' init faults start at 1.0 times or more. Checkpoints the spectral test reads as fresh
#: (``looks_trained`` False) were re-drawn and ended worse: a Llama trained 300 steps from 0.5
#: (first loss 2.0, 0.41 times: 1.32 against 0.98) and an 8-layer sigmoid MLP trained from std 0.5
#: on digits (0.33, 0.14 times). A loop that divides its loss by up to 4 accumulation steps still
#: has its fresh model audited; a regression loss with several outputs may read as learnt (then
#: the training-time rules are the ones that act)
LEARNT_FRACTION = 0.5


def learnt(first_loss: float, classes: int) -> bool:
    """A first loss under ``LEARNT_FRACTION`` of a uniform guess over ``classes``: the model has learnt.

    Example:
        >>> learnt(1.0, 128), learnt(6.0, 128), learnt(0.01, 1), learnt(float("nan"), 10)
        (True, False, False, False)
    """
    return classes >= 2 and 0.0 <= first_loss < LEARNT_FRACTION * math.log(classes)


def causes_gone(codes: list[str], findings: list[Finding], model: nn.Module, example_inputs: Any) -> bool:
    """None of ``codes`` is among ``findings`` (nor, for ``poor-init``, found again by ``init_fault``
    on the weights now; without inputs it counts as still there).

    Example:
        >>> causes_gone(["dead-relu"], [Finding("loss-plateau", "warning", "p")], nn.Linear(2, 2), None)
        True
    """
    now = {f.code for f in findings}
    if "poor-init" in codes and (example_inputs is None or init_fault(model, example_inputs)):
        now.add("poor-init")
    return not now & set(codes)


class InitAudit:
    """The attach-time init audit and the latest batch (see the module docstring).

    Args:
        root: the watched model.
        refused: why surgery is refused (then no audit), or None.
        forwards: the watcher's forward machinery (its ``mapping`` flag marks traced forwards).
        stacklevel: the warning's ``stacklevel`` (the user's line).
    """

    def __init__(self, root: nn.Module, refused: str | None, forwards: Any, stacklevel: Callable[[], int]) -> None:
        self.root, self.refused, self.forwards, self.stacklevel = root, refused, forwards, stacklevel
        self.faults: list[Finding] | None = None  # None: not looked yet
        self.inputs: Any = None  # the latest training batch (without example inputs)
        self.unread = False  # a first batch that could not be read was warned about
        self.classes = 1  # the output's width (``output_classes``), read by the audit

    def keep_inputs(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """The model's forward pre-hook: keep the batch; audit at the first one."""
        if self.forwards.mapping:
            return
        self.inputs = (args[0] if len(args) == 1 else args) if not kwargs else kwargs if not args else \
            bind_call(module, args, kwargs)
        if self.faults is None and self.inputs is not None:
            self.look(self.inputs)
        elif self.faults is None and not self.unread:  # model(ids, labels=ids): no binding found
            self.unread = True
            warnings.warn("graddoctor.autofix: the model's first forward mixes positional and keyword arguments "
                          "that do not bind to its forward's parameters, so the init audit did not run - pass "
                          "example_inputs= (a dict or tuple) to gd.watch", stacklevel=self.stacklevel())

    def look(self, inputs: Any, given: bool = False) -> bool:
        """Run the audit once on ``inputs`` (nothing to audit without inputs or with surgery
        refused). False when the forward failed: ``given`` inputs (the user's example inputs)
        are then left for the first training batch (``faults`` stays None)."""
        self.faults = []
        if self.refused is not None or inputs is None:
            return True
        self.forwards.mapping = True
        try:
            mmap = ModelMap(self.root, inputs)
            faults, self.classes = init_fault(self.root, inputs, mmap), output_classes(mmap)
            self.faults = [] if faults and looks_trained(self.root) else faults  # not an init: trained
            return True
        except Exception as e:  # noqa: BLE001 - an exotic forward: autofix goes on without it
            why = f"{type(e).__name__}: {e}"
            if given:
                self.faults = None
                warnings.warn(f"graddoctor.autofix: example_inputs do not fit the model ({why}); autofix "
                              "uses the first training batch instead", stacklevel=self.stacklevel())
            else:
                warnings.warn(f"graddoctor.autofix: the init audit failed ({why}); autofix goes on "
                              "without it", stacklevel=self.stacklevel())
            return False
        finally:
            self.forwards.mapping = False

    def take(self, first_loss: float = math.nan, now: float = math.nan) -> list[Finding]:
        """The faults found, once (the first check acts on them); none when the ``first_loss``
        (at the attach-time weights) says the model has learnt (``learnt``), nor when the loss
        level ``now`` at that check says it has learnt since (under ``LEARNT_FRACTION`` of a uniform
        guess and of the first loss: a loss scaled down by accumulation must still halve): that init
        trains. A healthy L-BFGS run on digits was at 0.28 of ln(10) by the step-10 check (2.31 ->
        0.65) and its re-draw cost a point."""
        out, self.faults = self.faults or [], []
        since = learnt(now, self.classes) and now < LEARNT_FRACTION * first_loss
        return [] if learnt(first_loss, self.classes) or since else out


__all__ = ["ACT_ENTROPY", "LEARNT_FRACTION", "InitAudit", "causes_gone", "init_fault", "learnt", "output_classes"]
