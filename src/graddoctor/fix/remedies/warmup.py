"""``warmup``: a linear learning-rate warm-up wrapped around the user's optimizer.

A post-LN Transformer's output-side gradients are large at initialisation, so full-size
Adam steps from step 1 throw it onto a plateau it does not leave; ramping the learning rate
up over the first steps avoids it (Xiong et al. 2020, sec. 3; Liu et al. 2020, RAdam, sec. 3).
``LinearWarmup`` is an optimizer step pre-hook: before step ``k`` (from 0) it scales each
group's learning rate by ``min(1, (k + 1) / steps)`` and a step post-hook (registered on the
first call) puts the unscaled rate back, so a scheduler that reads or writes
``group["lr"]`` between steps never sees the scaled value.

``install(optimizer, steps)`` registers it as the optimizer's *first* pre-hook, and its
post-hook goes first too: the rate other hooks read in the step (watch records it; a
post-LN rule looks for a warm-up there) is the ramped one, and a post-hook that changes the
rate (autofix lowering it) sees the group's own. A finished or ``stop()``-ped ramp does
nothing; its hooks are removed by ``remove()`` only, never from inside a hook (torch
iterates the hook dicts while calling them).

Example:
    >>> import torch
    >>> w = torch.nn.Parameter(torch.ones(1))
    >>> opt = torch.optim.SGD([w], lr=1.0)
    >>> hook = LinearWarmup(steps=4); handle = opt.register_step_pre_hook(hook)
    >>> seen = []
    >>> for _ in range(5):
    ...     w.grad = torch.ones(1); opt.step(); seen.append(round(1.0 - w.item(), 2)); _ = w.data.fill_(1.0)
    >>> seen, opt.param_groups[0]["lr"]
    ([0.25, 0.5, 0.75, 1.0, 1.0], 1.0)
    >>> handle.remove(); hook.remove()
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix.remedies.base import Change
from graddoctor.fix.remedies.registry import RemedyContext, register

#: default warm-up length in optimizer steps (Vaswani et al. 2017 used 4000 of 100k; short
#: runs need the ramp over their first few hundred steps)
DEFAULT_STEPS = 100


class LinearWarmup:
    """Optimizer step pre-hook: learning rate x ``min(1, (k + 1) / steps)`` at step ``k``.

    Args:
        steps: warm-up length in optimizer steps (>= 1).

    Example:
        >>> LinearWarmup(10).factor(0), LinearWarmup(10).factor(20)
        (0.1, 1.0)
    """

    def __init__(self, steps: int = DEFAULT_STEPS) -> None:
        if not isinstance(steps, int) or steps < 1:
            raise InputError(f"warmup steps must be a positive int, got {steps!r}")
        self.steps = steps
        self.k = 0
        self.done = False
        self._saved: list[float] | None = None
        self._post: Any = None
        self._pre: Any = None  # set by ``install``

    def factor(self, k: int) -> float:
        """The learning-rate factor at step ``k`` (from 0)."""
        return min(1.0, (k + 1) / self.steps)

    def __call__(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self.done or self.k >= self.steps:
            return
        if self._post is None:  # registered here, not from a post-hook (the dict torch is iterating)
            self._post = optimizer.register_step_post_hook(self._restore)
            _first(getattr(optimizer, "_optimizer_step_post_hooks", None), self._post)
        f = self.factor(self.k)
        self._saved = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = g["lr"].mul(f) if isinstance(g["lr"], torch.Tensor) else g["lr"] * f

    def _restore(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self._saved is not None:
            for g, lr in zip(optimizer.param_groups, self._saved):
                g["lr"] = lr
            self._saved = None
            self.k += 1

    def stop(self) -> None:
        """Scale no further step (safe inside a hook: the current step's rate is still put back)."""
        self.done = True

    def remove(self) -> None:
        """Remove the post-hook this hook registered, and its pre-hook when ``install`` registered
        it (else that handle is the caller's). Not from inside an optimizer hook."""
        self.done = True
        for h in (self._post, self._pre):
            if h is not None:
                h.remove()
        self._post = self._pre = None


def _first(hooks: Any, handle: Any) -> None:
    """Move ``handle``'s hook to the front of the optimizer's hook dict (when torch keeps one)."""
    if isinstance(hooks, OrderedDict) and handle.id in hooks:
        hooks.move_to_end(handle.id, last=False)


def install(optimizer: torch.optim.Optimizer, steps: int = DEFAULT_STEPS) -> LinearWarmup:
    """A ``LinearWarmup`` registered as ``optimizer``'s first step pre-hook (``remove()`` takes it
    off). Not from inside a pre-hook of ``optimizer`` (its post-hooks are fine).

    Example:
        >>> w = torch.nn.Parameter(torch.ones(1)); opt = torch.optim.SGD([w], lr=1.0)
        >>> seen = []; _ = opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
        >>> ramp = install(opt, 2)
        >>> for _ in range(3):
        ...     w.grad = torch.ones(1); opt.step()
        >>> seen, opt.param_groups[0]["lr"]
        ([0.5, 1.0, 1.0], 1.0)
        >>> ramp.remove()
    """
    hook = LinearWarmup(steps)
    hook._pre = optimizer.register_step_pre_hook(hook)
    _first(getattr(optimizer, "_optimizer_step_pre_hooks", None), hook._pre)
    return hook


@register("warmup", family="schedule", keeps_map=True, options=("steps",),
          summary="linear learning-rate warm-up as an optimizer step hook")
def warmup(model: nn.Module, layers: list[str] | None, ctx: RemedyContext) -> tuple[nn.Module, Change]:
    """A linear LR warm-up over ``ctx.options["steps"]`` steps (default ``DEFAULT_STEPS``):
    registered on ``ctx.optimizer`` when given, else a hook for ``RepairResult.attach``.

    Args:
        model: the model, returned unchanged (the warm-up lives on the optimizer).
        layers: ignored.
        ctx: ``ctx.options["steps"]``; ``ctx.optimizer``.

    Returns:
        ``(model, change)``: "applied" when registered on the optimizer, else "advice" with
        the hook in ``change.hooks``.

    Raises:
        InputError: a warm-up length that is not a positive int.

    Example:
        >>> _, change = warmup(nn.Linear(2, 2), None, RemedyContext("warmup"))
        >>> change.kind, change.details["steps"]
        ('advice', 100)
    """
    steps = ctx.options.get("steps", DEFAULT_STEPS)
    LinearWarmup(steps)  # validates ``steps``
    why = ("full-size steps from initialisation throw a post-LN Transformer onto a plateau; a "
           f"learning rate ramped up linearly over the first {steps} steps avoids it "
           "(Xiong et al. 2020; Liu et al. 2020)")
    details = {"steps": steps,
               "code": f"optimizer.register_step_pre_hook(graddoctor.fix.remedies.warmup.LinearWarmup({steps}))"
                       "  # or torch.optim.lr_scheduler.LinearLR(optimizer, 1/steps, 1.0, steps)"}
    if ctx.optimizer is None:
        return model, Change("warmup", [], why, "advice", details, hooks=[LinearWarmup(steps)])
    hook = install(ctx.optimizer, steps)
    return model, Change("warmup", [], why, "applied", details, hooks=[hook], handles=[hook._pre])


__all__ = ["DEFAULT_STEPS", "LinearWarmup", "install", "warmup"]
