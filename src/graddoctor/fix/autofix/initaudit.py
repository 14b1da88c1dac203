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

from graddoctor.diagnose.checktime.attention import SCALE_FLOOR, attention_init, weight_scale
from graddoctor.diagnose.checktime.static import poor_init_all
from graddoctor.inputs import bind_call
from graddoctor.measure.probe_softmax import attention_entropy
from graddoctor.measure.trained import looks_trained
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

#: below this median attention entropy (1 uniform, 0 one-hot) a Transformer drawn large is an init
#: fault autofix acts on. check warns from 0.75; between the two the init may even help (a tiny Phi
#: at ``initializer_range`` 0.2, entropy about 0.7, trained to 0.37 against 0.89 at 0.02). Hugging
#: Face BERT/GPT-2 at 0.5 and 1.0 read 0.02-0.12 and neither learns (``checktime.attention``);
#: Llama and Phi at 1.0 sat at loss 6.0 after 200 steps (vocabulary 128: ln V = 4.85) with no
#: finding from watch
ACT_ENTROPY = 0.3
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


def init_fault(model: nn.Module, example_inputs: Any, mmap: ModelMap | None = None) -> list[Finding]:
    """The ``poor-init`` finding on the model's weights as they are now (call it at
    attach): weight scales off He/Xavier for the activation that follows, compounding to
    >= 1 order of magnitude over a plain chain (``static.INIT_CHAIN_ORDERS``; or one layer off
    by 30x), or most norm gains near zero (``norm_gains.small_norm_gains``), or a Transformer's
    weights drawn large with a median attention entropy under ``ACT_ENTROPY`` (check's
    ``checktime.attention`` rule, which warns from 0.75). A definite fault of
    the init, seen before any training; autofix re-draws the weights at its first check (a
    fix on trial: a pretrained model whose trained scales look off is restored when the loss
    does not fall). No healthy run of either training suite has one.

    Example (PyTorch's default init is 1/sqrt(6) of He's scale before a ReLU: 8 layers compound it
    to 3 orders; He's init is clean):
        >>> import torch
        >>> net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.ReLU())])
        >>> [f.code for f in init_fault(net, torch.randn(4, 16))]
        ['poor-init']
        >>> for m in net[::2]: _ = nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        >>> init_fault(net, torch.randn(4, 16))
        []
    """
    found = poor_init_all(mmap or ModelMap(model, example_inputs), model)
    # a Transformer drawn so large that its attention is one-hot (check's attention rule): the
    # whole model is off scale, so its small init stands for the static rules' layer-wise findings
    # (a T5 at initializer_factor 50 got He on the 8 of its 33 layers the chain rule named, and
    # stayed at a loss of 6900)
    if not weight_scale(model)[0] >= SCALE_FLOOR:  # not drawn large: no extra forward for the attention
        return found
    att = attention_init(attention_entropy(model, example_inputs), model)
    if att is not None and att.evidence["attention_entropy_median"] < ACT_ENTROPY:
        return [att, *(f for f in found if f.remedies == ["norm-gain"])]
    return found


def output_classes(mmap: ModelMap) -> int:
    """The width of the output layers' last axis: a classifier's classes, a language model's
    vocabulary (1 when no output layer has one).

    Example:
        >>> import torch
        >>> output_classes(ModelMap(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10)), torch.randn(2, 4)))
        10
    """
    return max((x.output_shape[-1] for x in mmap.layers if x.is_output and x.output_shape), default=1)


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

    def take(self, first_loss: float = math.nan) -> list[Finding]:
        """The faults found, once (the first check acts on them); none when the ``first_loss``
        (at the attach-time weights) says the model has learnt (``learnt``)."""
        out, self.faults = self.faults or [], []
        return [] if learnt(first_loss, self.classes) else out


__all__ = ["ACT_ENTROPY", "LEARNT_FRACTION", "InitAudit", "causes_gone", "init_fault", "learnt", "output_classes"]
