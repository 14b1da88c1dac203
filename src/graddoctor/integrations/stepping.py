"""The watch machinery driven by a framework's hooks instead of the optimizer's step pre-hook.

Lightning and the Hugging Face Trainer run forward and backward *inside*
``optimizer.step(closure)`` (Lightning) or step through wrappers, so the step pre-hook can fire
before the step's gradients exist. ``HookedWatcher`` records a step when the framework calls
``before_optimizer_step(optimizer)`` (its "gradients are final" hook) and keeps the optimizer's
post-hook for the update norms. Losses are paired with their step by the callback: the mean of
the micro-batch losses since the previous optimizer step (``LossAverage``). The steps are
numbered as the framework numbers them (``start_at``: its global step, which a run resumed from
a checkpoint continues).

Example:
    >>> import torch
    >>> net = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> w = HookedWatcher(net, opt).attach()
    >>> net(torch.ones(1, 2)).sum().backward()
    >>> w.before_optimizer_step(opt); opt.step(); w.step(torch.tensor(0.5)); w.detach()
    >>> rec = w.records()[1][0]
    >>> rec["step"], rec["loss"], round(rec["grad_norm"][""], 4)
    (1, 0.5, 1.7321)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from graddoctor.diagnose.watching import Watcher
from graddoctor.measure.monitor.optimizers import unwrap_optimizer


class _NoGrad:
    """Stands for a parameter the stepping optimizer does not own: no gradient this step."""

    grad = None
    requires_grad = False


_NO_GRAD = _NoGrad()


class HookedWatcher(Watcher):
    """A ``Watcher`` whose steps are marked by ``before_optimizer_step`` (see the module doc).

    Args:
        model: the model (the LightningModule, or the Trainer's model).
        optimizer: the first (main) optimizer: its learning rate and step post-hook are used.
        log_dir, **kwargs: as ``gd.watch``.
        optimizers: every optimizer the framework steps (default: ``optimizer`` alone); with more
            than one (a GAN), each step records only the layers its optimizer owns, and its
            learning rate.
        extra_config: entries added to the meta record's ``config`` (e.g. the clip threshold).
    """

    def __init__(self, model: Any, optimizer: Any = None, log_dir: Any = None, *,
                 optimizers: Sequence[Any] | None = None, extra_config: dict | None = None,
                 **kwargs: Any) -> None:
        super().__init__(model, optimizer, log_dir, **kwargs)
        self.several_optimizers = self.other_optimizers = optimizers is not None and len(optimizers) > 1
        self.extra_config = dict(extra_config or {})
        write_meta = self.output.write_meta

        def write_meta_with_extra(meta: dict) -> None:
            meta.setdefault("config", {}).update(self.extra_config)
            write_meta(meta)

        self.output.write_meta = write_meta_with_extra  # type: ignore[method-assign]

    def _safe_pre_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """The optimizer's own pre-hook does nothing here: the framework hook marks the step."""

    def before_optimizer_step(self, optimizer: Any = None) -> None:
        """Record one optimizer step from the gradients as they are now (final for the step).

        Args:
            optimizer: the optimizer about to step (wrappers accepted). With several
                optimizers (``optimizers``, as in a GAN), or one that is not the watched one,
                layers whose parameters it does not own get no gradient norm this step (they
                may hold the other optimizer's gradients), and no update is measured on such a
                step.
        """
        if not self.attached:
            return
        inner = unwrap_optimizer(optimizer) if optimizer is not None else self.optimizer
        self._guarded(self._framework_step, inner)

    def _framework_step(self, inner: Any) -> None:
        if self._meta is None:
            self._setup(None)
        stepping = inner if inner is not None else self.optimizer
        # the optimizer's post-hook writes the step's update only inside a step the gate let in
        # (the pre-hook that would open it does nothing here)
        self._gate.enter(stepping)
        owned = None
        if inner is not None and (inner is not self.optimizer or self.several_optimizers):
            ids = {id(p) for g in inner.param_groups for p in g["params"]}
            # several optimizers: filter whatever requires_grad says (Lightning's toggle_optimizer
            # turns the other's off while their last gradients stay in .grad)
            if not all(id(p) in ids for p in self.steps.params if p.requires_grad or self.several_optimizers):
                owned = ids
        saved = self.steps.params, self.steps.optimizer
        if owned is not None:
            self.steps.params = [p if id(p) in owned else _NO_GRAD for p in saved[0]]
        if self.several_optimizers:
            self.steps.optimizer = stepping  # the step's learning rate is the stepping optimizer's
        try:
            self._pre_step(stepping)
            self._used.mark(stepping)  # its gradients are used: a loss given after it is this step's
        finally:
            self.steps.params, self.steps.optimizer = saved
            if owned is not None:
                self.steps.snapshot = None  # the other optimizer's layers did not move: no update sample


class LossAverage:
    """The mean of the losses seen since the last ``take()`` (kept on the device, no host read).

    Example:
        >>> avg = LossAverage(); avg.add(torch.tensor(1.0)); avg.add(torch.tensor(3.0))
        >>> avg.take().item(), avg.take()
        (2.0, None)
    """

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, loss: Any) -> None:
        """Add one loss (a scalar tensor or number; anything else is ignored)."""
        if isinstance(loss, torch.Tensor) and loss.numel() == 1 and not loss.is_complex():
            value = loss.detach().float().reshape(())
        elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
            value = torch.tensor(float(loss))
        else:
            return
        self.total = value if self.total is None else self.total + value.to(self.total.device)
        self.count += 1

    def take(self) -> torch.Tensor | None:
        """The mean so far (None without losses); starts over."""
        if self.total is None:
            return None
        mean = self.total / self.count if self.count > 1 else self.total
        self.total, self.count = None, 0
        return mean


__all__ = ["HookedWatcher", "LossAverage"]
