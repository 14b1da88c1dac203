"""Gradient clipping as an optimizer step pre-hook: by norm, by value, adaptive (AGC).

The hook runs right before ``optimizer.step()``, where gradients are final (after
accumulation, AMP unscale and DDP all-reduce), and clips the gradients of the
parameters the optimizer owns. ``dispatch_clip_grad`` has timm's shape:

| mode | what | reference |
|---|---|---|
| ``norm`` (``clip-norm``) | rescale all gradients so their global L2 norm <= value (default 1.0) | Pascanu et al. 2013 |
| ``value`` (``clip-value``) | clamp each gradient entry to [-value, value] (default 1.0) | Mikolov 2012 |
| ``agc`` (``clip-agc``) | per output unit, rescale the gradient so ‖g‖ <= value * max(‖w‖, 1e-3) (default 0.01) | Brock et al. 2021 |

The model is not changed: the remedy returns it as is (no copy needed) with a
change whose ``hooks`` ``RepairResult.attach(optimizer)`` registers.

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(3)); w.grad = torch.full((3,), 10.0)
    >>> dispatch_clip_grad([w], 1.0, "norm"); round(w.grad.norm().item(), 4)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register

MODES = {"clip-norm": "norm", "clip-value": "value", "clip-agc": "agc"}
DEFAULTS = {"norm": 1.0, "value": 1.0, "agc": 0.01}


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per output unit (dim 0), kept broadcastable; whole norm for scalars/vectors."""
    if x.dim() <= 1:
        return x.norm(2)
    return x.norm(2, dim=tuple(range(1, x.dim())), keepdim=True)


def adaptive_clip_grad(params: Iterable[torch.Tensor], clip: float = 0.01, eps: float = 1e-3) -> None:
    """AGC (Brock et al. 2021): clip each unit's gradient to ``clip`` times its weight norm."""
    for p in params:
        if p.grad is None:
            continue
        p_norm = unitwise_norm(p.detach()).clamp_(min=eps)
        g_norm = unitwise_norm(p.grad.detach())
        max_norm = p_norm * clip
        clipped = p.grad.detach() * (max_norm / g_norm.clamp(min=1e-6))
        p.grad.detach().copy_(torch.where(g_norm < max_norm, p.grad.detach(), clipped))


def dispatch_clip_grad(params: Iterable[torch.Tensor], value: float, mode: str = "norm",
                       norm_type: float = 2.0) -> None:
    """Clip gradients in place by "norm", "value" or "agc" (timm's shape)."""
    params = [p for p in params if p.grad is not None]
    if mode == "norm":
        nn.utils.clip_grad_norm_(params, value, norm_type=norm_type)
    elif mode == "value":
        nn.utils.clip_grad_value_(params, value)
    elif mode == "agc":
        adaptive_clip_grad(params, value)
    else:
        raise InputError(f"unknown clipping mode {mode!r}; choose norm, value or agc")


def clip_hook(mode: str, value: float | None = None) -> Callable[[Any, tuple, dict], None]:
    """An optimizer step pre-hook that clips the optimizer's gradients.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
        >>> handle = opt.register_step_pre_hook(clip_hook("value", 0.5)); handle.remove()
    """
    v = DEFAULTS[mode] if value is None else value

    def hook(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        dispatch_clip_grad((p for g in optimizer.param_groups for p in g["params"]), v, mode)

    hook.graddoctor_clip = (mode, v)  # type: ignore[attr-defined]
    return hook


@register(*MODES, family="clip", keeps_map=True, options=("value",),
          summary="gradient clipping ({id}) as an optimizer step pre-hook")
def clip(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """Gradient clipping (mode from ``ctx.remedy``, bound ``ctx.options["value"]``): registered
    on ``ctx.optimizer`` when given, else a hook for ``RepairResult.attach``.

    Returns the model unchanged (clipping lives on the optimizer); ``layers`` is ignored.

    Args:
        model: the model, returned unchanged (clipping lives on the optimizer).
        layers: ignored.
        ctx: ``ctx.remedy`` the mode; ``ctx.options["value"]`` the bound; ``ctx.optimizer``.

    Returns:
        ``(model, change)``: "applied" when registered on the optimizer, else "advice" with
        the hook in ``change.hooks``.

    Raises:
        InputError: an unknown clipping remedy.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> _, change = clip(net, None, RemedyContext("clip-norm"))
        >>> change.kind, change.details["value"]
        ('advice', 1.0)
    """
    remedy, value, optimizer = ctx.remedy, ctx.options.get("value"), ctx.optimizer
    if remedy not in MODES:
        raise InputError(f"unknown clipping remedy {remedy!r}; choose one of {sorted(MODES)}")
    mode = MODES[remedy]
    v = DEFAULTS[mode] if value is None else value
    hook = clip_hook(mode, v)
    why = {"norm": "rescaling the gradient to a bounded global norm stops a single large "
                   "step from blowing up the weights (Pascanu et al. 2013)",
           "value": "clamping gradient entries bounds each update (Mikolov 2012)",
           "agc": "clipping each unit's gradient relative to its weight norm bounds the relative "
                  "update (Brock et al. 2021)"}[mode]
    details: dict[str, Any] = {"mode": mode, "value": v,
                               "code": f"optimizer.register_step_pre_hook(graddoctor.fix.remedies.clip."
                                       f"clip_hook({mode!r}, {v}))  # or result.attach(optimizer)"}
    change = Change(remedy, [], why, "advice", details, hooks=[hook])
    if optimizer is not None:
        change.kind = "applied"
        drop_earlier_clips(optimizer)
        change.handles.append(optimizer.register_step_pre_hook(hook))
    return model, change


def clips_in_force(optimizer: Any) -> dict[Any, Callable[[Any, tuple, dict], None]]:
    """graddoctor's clip hooks registered on ``optimizer`` (its step pre-hooks made by
    ``clip_hook``), by hook id.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
        >>> _ = opt.register_step_pre_hook(clip_hook("norm", 1.0))
        >>> [h.graddoctor_clip for h in clips_in_force(opt).values()]
        [('norm', 1.0)]
    """
    hooks = getattr(optimizer, "_optimizer_step_pre_hooks", None)
    if not isinstance(hooks, dict):
        return {}
    return {k: h for k, h in hooks.items() if hasattr(h, "graddoctor_clip")}


def drop_earlier_clips(optimizer: torch.optim.Optimizer) -> int:
    """Remove graddoctor's clip hooks from ``optimizer`` (one clip at a time: a new clip replaces
    the one an earlier repair, watch session or autofix round left). Returns how many were removed.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
        >>> _ = opt.register_step_pre_hook(clip_hook("norm", 1.0))
        >>> drop_earlier_clips(opt), drop_earlier_clips(opt)
        (1, 0)
    """
    ours = clips_in_force(optimizer)
    for k in ours:
        del optimizer._optimizer_step_pre_hooks[k]
    return len(ours)
