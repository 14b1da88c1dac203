"""The opt-in hook for ``repair``: where findings call for ``lr-find``, run it and set the LR.

``fix`` sits below ``lrfind`` in the layers, so ``repair`` cannot import this module; it takes
the hook as a callable (``repair(..., tune_lr=graddoctor.lrfind.planner.tune_lr)``) or a
caller at ``lrfind``'s layer or above runs it after ``repair``.

Example:
    >>> from graddoctor.report import Finding, Report
    >>> calls_for_lr_find(Report([Finding("loss-plateau", "warning", "flat", remedies=["lr-find"])]))
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from graddoctor.lrfind import LRFindResult, lr_find
from graddoctor.report import Report

REMEDY = "lr-find"


def calls_for_lr_find(report: Report) -> bool:
    """True when a finding of ``report`` lists the ``lr-find`` remedy."""
    return any(REMEDY in f.remedies for f in report.findings)


def tune_lr(report: Report, model: nn.Module, optimizer: torch.optim.Optimizer,
            train_loader: Iterable, **kwargs: Any) -> LRFindResult | None:
    """Run ``lr_find`` when ``report`` calls for it and set every param group's LR to the suggestion.

    Args:
        report: the findings (``gd.check`` / ``gd.watch`` / ``repair``'s report).
        model, optimizer, train_loader: as for ``lr_find``.
        **kwargs: passed to ``lr_find``.

    Returns:
        The ``LRFindResult`` (its findings say why no LR was set, if none was), or None when no
        finding calls for ``lr-find`` (nothing run, nothing changed).
    """
    if not calls_for_lr_find(report):
        return None
    result = lr_find(model, optimizer, train_loader, **kwargs)
    if result.suggestion is not None:
        for group in optimizer.param_groups:
            group["lr"] = result.suggestion
    return result


__all__ = ["REMEDY", "calls_for_lr_find", "tune_lr"]
