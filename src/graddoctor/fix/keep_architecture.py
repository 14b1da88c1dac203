"""The plan of ``repair(..., keep_architecture=True)``: init-only remedies from mean-field theory.

The regular plan (``planner.plan``) may swap activations, insert norms or add skips. With
``keep_architecture=True`` its steps of the families that change modules or re-draw weights
(activation, norm, skip, init) are replaced by *one* init chosen for the hidden activation
of the model's plain chain (same module types, same count afterwards):

| model | remedy | theory |
|---|---|---|
| sigmoid/tanh-like hidden activations, no skip path | ``edge-of-chaos-init`` | Schoenholz et al. 2017; Pennington et al. 2017; Xiao et al. 2018 |
| ReLU-family hidden activations with ``phi(x) - phi(-x) = c x`` (ReLU, leaky ReLU, GELU, SiLU), no skip path | ``looks-linear-init`` | Balduzzi et al. 2017 |
| skip paths, or other activations | the regular plan's init, if any (no mean-field init applies to the chain) | |

Clipping, advice and any other step that keeps the modules are kept, and so are the steps of
those families that change no module and re-draw no weight (``SETTINGS``: BatchNorm back in
training mode, norm gains set to 1, the LSTM forget bias): they are the fix itself, and a
re-draw in their place would throw the trained weights away. ``repair`` then runs
the LR range test on the re-initialised model when it is given a ``train_loader``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.fix.planner import PlanStep
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    >>> steps = [PlanStep("relu", "swap"), PlanStep("he-init", "re-init"), PlanStep("clip-norm", "x")]
    >>> [s.remedy for s in keep_architecture_plan(steps, net, torch.randn(8, 4))]
    ['edge-of-chaos-init', 'clip-norm']
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch import nn

from graddoctor import kinds
from graddoctor.fix.planner import PlanStep
from graddoctor.fix.remedies.critical_init import linear_part
from graddoctor.fix.remedies.registry import get
from graddoctor.modelmap import ModelMap

#: remedy families that change modules or re-draw weights: replaced by the mean-field init
CHANGING = ("activation", "norm", "skip", "init")
#: remedies of those families that keep every module and every weight draw: always kept
SETTINGS = ("train-mode", "norm-gain", "forget-bias")


def mean_field_init(model: nn.Module, mmap: ModelMap) -> tuple[str | None, str]:
    """The init-only remedy for the model's hidden activation, and why (None: none applies).

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> mean_field_init(net, ModelMap(net, torch.randn(2, 4)))[0]
        'looks-linear-init'
    """
    if mmap.shortest_path < 0.5 * mmap.longest_path:
        return None, "skip paths: the plain-chain theory does not describe this model"
    hidden = Counter(x.activation for x in mmap.layers if not x.is_output and x.activation)
    if not hidden:
        return None, "no hidden activation"
    kind = hidden.most_common(1)[0][0]
    if kinds.family(kind) == "saturating":
        return "edge-of-chaos-init", f"{kind} hidden activations: the edge of chaos"
    if linear_part(kind) is not None:
        return "looks-linear-init", f"{kind} hidden activations: looks-linear"
    return None, f"{kind}: no mean-field init known here"


def keep_architecture_plan(steps: list[PlanStep], model: nn.Module, example_inputs: Any = None,
                           mmap: ModelMap | None = None) -> list[PlanStep]:
    """``steps`` with their module-changing and init steps replaced by the mean-field init.

    Args:
        steps: the regular plan.
        model: the model.
        example_inputs: a batch (the map and the mean-field init need one).
        mmap: the model's ``ModelMap`` on ``example_inputs``, if already built.

    Returns:
        The new plan (the regular one's other steps, in order, after the init).

    Raises:
        Nothing: without example inputs the init step stays in the plan and ``repair``
        reports it as advice (it needs a batch).
    """
    changing = [s for s in steps if get(s.remedy).family in CHANGING and s.remedy not in SETTINGS]
    kept = [s for s in steps if s not in changing]
    if not changing:
        return kept
    codes = sorted({c for s in changing for c in s.codes})
    if mmap is None and example_inputs is not None:
        mmap = ModelMap(model, example_inputs)
    if mmap is None:
        return [PlanStep("edge-of-chaos-init", "keep_architecture: a mean-field init", codes)] + kept
    rid, why = mean_field_init(model, mmap)
    inits = [s for s in changing if get(s.remedy).family == "init"]
    if rid is None:
        return inits + kept
    others = [s.remedy for s in changing if s.remedy != rid]  # the plan's own choice is no "instead"
    reason = (f"keep_architecture ({', '.join(codes) or 'requested'}): {why}"
              + (f", instead of {', '.join(others)}" if others else ""))
    return [PlanStep(rid, reason, codes)] + kept


__all__ = ["CHANGING", "SETTINGS", "keep_architecture_plan", "mean_field_init"]
