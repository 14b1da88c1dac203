"""``gd.watch``: the training monitor plus the judgement of what it recorded.

``Monitor`` (``graddoctor.measure.monitor``) records; ``Watcher`` adds ``report()``, which runs the
training-time rules (``graddoctor.diagnose.training``) over the records.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from graddoctor.diagnose.training import diagnose
from graddoctor.measure.monitor.watcher import Monitor
from graddoctor.report import Report


class Watcher(Monitor):
    """An attached training monitor whose ``report()`` judges what it recorded (see ``Monitor``)."""

    def report(self) -> Report:
        """The Report: raw series in ``data`` and the findings of the training-time rules.

        Returns:
            ``Report(source="watch")``.
        """
        meta, steps = self.records()
        return build_report(meta, steps)


def build_report(meta: dict, steps: list[dict]) -> Report:
    """``Report(source="watch")`` over run-log records; findings from ``graddoctor.diagnose.training`` """
    return Report(diagnose(meta, steps), source="watch", data={"meta": meta, "steps": steps})



def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    log_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Watcher:
    """Start watching ``model``: returns an attached ``Watcher`` (also a context manager).

    Args:
        model: the model.
        optimizer: its optimizer (gradients read in its step pre-hook); None: ``w.step()`` marks steps.
        log_dir: where ``watch.jsonl`` goes (None: in memory only).
        **kwargs: see ``Watcher`` (example_inputs, flush_every, update_every, activation_every,
            weight_every, dead_window, output_grads, scaler, sinks, fsync, history).

    Example:
        >>> import torch, graddoctor as gd
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with gd.watch(net, opt) as w:
        ...     loss = net(torch.randn(4, 3)).sum(); loss.backward(); opt.step(); w.step(loss)
        >>> w.report().source
        'watch'
    """
    return Watcher(model, optimizer, log_dir, **kwargs).attach()



__all__ = ["Watcher", "build_report", "watch"]
