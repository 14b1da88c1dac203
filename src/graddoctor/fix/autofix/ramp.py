"""``warmup`` applied in place: a linear learning-rate ramp as optimizer hooks, no scheduler swap.

``LinearRamp(optimizer, steps)`` scales every param group's learning rate by ``k / steps`` for
the ``k``-th optimizer step after it is installed (k = 1..steps), then removes itself. It
multiplies the rate in a step pre-hook and puts the group's own rate back in the post-hook,
so it composes with any LR scheduler of the user's (the scheduler keeps writing its rates;
the ramp only scales the steps taken under it) and leaves no trace once done. Linear warm-up
is the standard rescue of post-LN Transformers (Xiong et al. 2020; Liu et al. 2020).

Example:
    >>> import torch
    >>> from torch import nn
    >>> p = nn.Parameter(torch.zeros(1))
    >>> opt = torch.optim.SGD([p], lr=1.0)
    >>> ramp = LinearRamp(opt, 4)
    >>> seen = []
    >>> h = opt.register_step_pre_hook(lambda o, a, k: seen.append(o.param_groups[0]["lr"]))
    >>> for _ in range(5):
    ...     p.grad = torch.ones(1); opt.step()
    >>> seen, opt.param_groups[0]["lr"], ramp.done
    ([0.25, 0.5, 0.75, 1.0, 1.0], 1.0, True)
"""

from __future__ import annotations

from typing import Any

import torch

#: default length of the ramp, in optimizer steps
RAMP_STEPS = 60


class LinearRamp:
    """A linear warm-up over ``steps`` optimizer steps from now (see the module docstring)."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps: int = RAMP_STEPS) -> None:
        self.optimizer, self.steps, self.k, self.done = optimizer, max(int(steps), 1), 0, False
        self._saved: list[Any] = []
        self._pre = optimizer.register_step_pre_hook(self._scale)
        # the post-hook is added at the first step: installing it from inside a post-hook (where
        # autofix runs) would change the dict the optimizer is iterating
        self._post: Any = None

    def _scale(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self._post is None:
            self._post = optimizer.register_step_post_hook(self._unscale)
        self.k += 1
        f = min(self.k / self.steps, 1.0)
        self._saved = [g["lr"] for g in optimizer.param_groups]
        for g in optimizer.param_groups:
            g["lr"] = g["lr"] * f if not isinstance(g["lr"], torch.Tensor) else g["lr"].mul(f)

    def _unscale(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        for g, lr in zip(optimizer.param_groups, self._saved):
            g["lr"] = lr
        self._saved = []
        if self.k >= self.steps:
            self.remove()

    def remove(self) -> None:
        """Take the hooks off (the rates are the groups' own again)."""
        self._pre.remove()
        if self._post is not None:
            self._post.remove()
        self.done = True


__all__ = ["RAMP_STEPS", "LinearRamp"]
