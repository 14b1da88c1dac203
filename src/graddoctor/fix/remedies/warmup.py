"""``warmup``: a linear learning-rate warm-up wrapped around the user's optimizer.

A post-LN Transformer's output-side gradients are large at initialisation, so full-size
Adam steps from step 1 throw it onto a plateau it does not leave; ramping the learning rate
up over the first steps avoids it (Xiong et al. 2020, sec. 3; Liu et al. 2020, RAdam, sec. 3).
``LinearWarmup`` is an optimizer step pre-hook: before step ``k`` (from 0) it scales each
group's learning rate by ``min(1, (k + 1) / steps)`` and a step post-hook (registered on the
first call) puts the unscaled rate back, so a scheduler that reads or writes
``group["lr"]`` between steps never sees the scaled value.

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

from typing import Any

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
        self._saved: list[float] | None = None
        self._post: Any = None

    def factor(self, k: int) -> float:
        """The learning-rate factor at step ``k`` (from 0)."""
        return min(1.0, (k + 1) / self.steps)

    def __call__(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self.k >= self.steps:
            return
        if self._post is None:
            self._post = optimizer.register_step_post_hook(self._restore)
        f = self.factor(self.k)
        self._saved = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = g["lr"] * f

    def _restore(self, optimizer: Any, args: tuple, kwargs: dict) -> None:
        if self._saved is not None:
            for g, lr in zip(optimizer.param_groups, self._saved):
                g["lr"] = lr
            self._saved = None
            self.k += 1

    def remove(self) -> None:
        """Remove the post-hook this hook registered (the pre-hook's own handle is the caller's)."""
        if self._post is not None:
            self._post.remove()
            self._post = None


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
    hook = LinearWarmup(steps)
    why = ("full-size steps from initialisation throw a post-LN Transformer onto a plateau; a "
           f"learning rate ramped up linearly over the first {steps} steps avoids it "
           "(Xiong et al. 2020; Liu et al. 2020)")
    details = {"steps": steps,
               "code": f"optimizer.register_step_pre_hook(graddoctor.fix.remedies.warmup.LinearWarmup({steps}))"
                       "  # or torch.optim.lr_scheduler.LinearLR(optimizer, 1/steps, 1.0, steps)"}
    change = Change("warmup", [], why, "advice", details, hooks=[hook])
    if ctx.optimizer is not None:
        change.kind = "applied"
        change.handles.append(ctx.optimizer.register_step_pre_hook(hook))
    return model, change


__all__ = ["DEFAULT_STEPS", "LinearWarmup", "warmup"]
