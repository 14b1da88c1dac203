"""The ``poor-init`` audit of a model's weights as they are now: check's static init rules plus
its attention rule for a Transformer drawn large. Autofix runs it at attach
(``fix.autofix.initaudit``) and re-draws on it; watch runs it at its first forward and keeps it
in the run's meta (``config.init_audit``), where the training-time ``poor-init`` rule reads it.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(16, 16), nn.ReLU())], nn.Linear(16, 10))
    >>> [f.code for f in init_fault(net, torch.randn(4, 16))], output_classes(ModelMap(net, torch.randn(2, 16)))
    (['poor-init'], 10)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from graddoctor.diagnose.checktime.attention import SCALE_FLOOR, attention_init, weight_scale
from graddoctor.diagnose.checktime.static import poor_init_all
from graddoctor.measure.probe_softmax import attention_entropy
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding

#: below this median attention entropy (1 uniform, 0 one-hot) a Transformer drawn large is an init
#: fault autofix acts on. check warns from 0.75; between the two the init may even help (a tiny Phi
#: at ``initializer_range`` 0.2, entropy about 0.7, trained to 0.37 against 0.89 at 0.02). Hugging
#: Face BERT/GPT-2 at 0.5 and 1.0 read 0.02-0.12 and neither learns (``checktime.attention``);
#: Llama and Phi at 1.0 sat at loss 6.0 after 200 steps (vocabulary 128: ln V = 4.85) with no
#: finding from watch
ACT_ENTROPY = 0.3


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
    if not weight_scale(model)[0] >= SCALE_FLOOR or not _has_attention(model):  # no extra forward then:
        return found  # the user's forward hooks see one more call (watch's audit at the first forward)
    att = attention_init(attention_entropy(model, example_inputs), model)
    if att is not None and att.evidence["attention_entropy_median"] < ACT_ENTROPY:
        return [att, *(f for f in found if f.remedies == ["norm-gain"])]
    return found


#: parts of a module's class or attribute name that say attention
ATTENTION_WORDS = ("attn", "attention", "selfatt", "crossatt", "mha", "multihead")


def _has_attention(model: nn.Module) -> bool:
    """A module whose class or attribute name says attention (``nn.MultiheadAttention``, HF
    ``*Attention``, ``attn``, ``SelfAtt``): the attention rule's forward is run only then.

    Example:
        >>> _has_attention(nn.TransformerEncoderLayer(8, 2)), _has_attention(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))
        (True, False)
    """
    return any(w in type(m).__name__.lower() or w in n.lower().rsplit(".", 1)[-1]
               for n, m in model.named_modules() for w in ATTENTION_WORDS)


def output_classes(mmap: ModelMap) -> int:
    """The width of the output layers' last axis: a classifier's classes, a language model's
    vocabulary (1 when no output layer has one).

    Example:
        >>> import torch
        >>> output_classes(ModelMap(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 10)), torch.randn(2, 4)))
        10
    """
    return max((x.output_shape[-1] for x in mmap.layers if x.is_output and x.output_shape), default=1)


__all__ = ["ACT_ENTROPY", "init_fault", "output_classes"]
