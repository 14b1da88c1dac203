"""``gd.watch``: the training monitor plus the judgement of what it recorded.

``Monitor`` (``graddoctor.measure.monitor``) records; ``Watcher`` adds ``report()``, which runs the
training-time rules (``graddoctor.diagnose.training``) over the records. The report is built
here, where the rules are: ``build_report`` also judges a run log read back from disk. A rule
module that is missing or broken raises; it is never reported as "no findings".
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

from graddoctor.diagnose.training import training_findings
from graddoctor.errors import InputError
from graddoctor.measure.monitor.watcher import Monitor
from graddoctor.report import Report


class Watcher(Monitor):
    """An attached training monitor whose ``report()`` judges what it recorded (see ``Monitor``)."""

    def report(self) -> Report:
        """Judge what was recorded so far: the training-time rules over ``self.records()``.

        Returns:
            ``Report(source="watch")``: the findings, and the records in ``data``
            (``meta``, ``steps``).

        Raises:
            Exception: any error of a rule (see ``build_report``).

        Example:
            >>> import torch, graddoctor as gd
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
            >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
            >>> with gd.watch(net, opt) as w:
            ...     loss = net(torch.randn(4, 3)).sum(); loss.backward(); opt.step(); w.step(loss)
            >>> w.report().findings
            []
        """
        meta, steps = self.records()
        report = build_report(meta, steps)
        for sink in self.output.sinks:  # sinks that show findings (W&B: summary and alerts)
            try:
                getattr(sink, "write_findings", lambda findings: None)(report.findings)
            except Exception as e:  # noqa: BLE001 - a sink's failure never hides the report
                warnings.warn(f"graddoctor: {type(sink).__name__} could not show the findings ({e})", stacklevel=2)
        return report


def build_report(meta: dict, steps: list[dict]) -> Report:
    """Judge one run's records: every training-time rule, then a ``Report(source="watch")``.

    Args:
        meta: the run log's meta record (``Watcher.records()[0]`` or ``runlog.read_run``).
        steps: the step records.

    Returns:
        ``Report(source="watch")`` with the findings of ``graddoctor.diagnose.training`` and
        the records in ``data`` (``meta``, ``steps``).

    Raises:
        InputError: records that are not a meta dict and a list of step dicts.
        Exception: any error raised by a rule propagates: a broken rule never reads as "ok".

    Example:
        >>> steps = [{"step": 0, "loss": 1.0}, {"step": 1, "loss": float("nan")}]
        >>> build_report({"layers": [], "activations": []}, steps).codes
        {'non-finite'}
    """
    return Report(training_findings(meta, steps), source="watch", data={"meta": meta, "steps": steps})


#: the Watcher class of ``watch(..., autofix=...)``, registered by ``graddoctor.fix.autofix``
#: (a higher layer: this module cannot import it)
_AUTOFIX: list[type] = []


def register_autofix(cls: type) -> None:
    """Make ``cls`` (a ``Watcher`` subclass taking ``autofix=``) the class of ``watch(..., autofix=...)``."""
    _AUTOFIX[:] = [cls]


def autofix_watcher() -> type | None:
    """The registered autofix Watcher class, or None."""
    return _AUTOFIX[0] if _AUTOFIX else None


def watch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    log_dir: str | os.PathLike | None = None,
    *,
    autofix: bool | list[str] = False,
    **kwargs: Any,
) -> Watcher:
    """Start watching ``model``: returns an attached ``Watcher`` (also a context manager).

    Args:
        model: the model.
        optimizer: its optimizer (gradients read in its step pre-hook); None: ``w.step()`` marks steps.
        log_dir: where ``watch.jsonl`` goes (None: in memory only).
        autofix: True (or a list of remedy ids): repair ``model`` and ``optimizer`` in place
            between two steps when an error finding with a gradient-flow cause fires
            (``graddoctor.fix.autofix``; needs ``optimizer``).
        **kwargs: see ``Watcher`` (example_inputs, flush_every, update_every, activation_every,
            weight_every, dead_window, output_grads, scaler, sinks, fsync, history).

    Returns:
        The attached ``Watcher``: call ``w.step(loss)`` each step, ``w.report()`` for the
        findings, ``w.detach()`` (or leave the ``with`` block) to remove every hook.

    Raises:
        InputError: ``model`` is not an ``nn.Module``, ``optimizer`` not an optimizer, an
            option out of range, or a sink without the sink methods.

    Example:
        >>> import torch, graddoctor as gd
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> with gd.watch(net, opt) as w:
        ...     loss = net(torch.randn(4, 3)).sum(); loss.backward(); opt.step(); w.step(loss)
        >>> w.report().source
        'watch'
    """
    if autofix is not False and autofix is not None:
        cls = autofix_watcher()
        if cls is None:  # pragma: no cover - graddoctor/__init__ imports graddoctor.fix
            raise InputError("watch(autofix=...) needs graddoctor.fix: import graddoctor first")
        return cls(model, optimizer, log_dir, autofix=autofix, **kwargs).attach()
    return Watcher(model, optimizer, log_dir, **kwargs).attach()


__all__ = ["Watcher", "autofix_watcher", "build_report", "register_autofix", "watch"]
