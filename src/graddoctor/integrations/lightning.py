"""``GradDoctorCallback`` for Lightning (``lightning`` and ``pytorch_lightning``).

Lightning runs forward and backward inside ``optimizer.step(closure)``, so the optimizer's step
pre-hook fires before the step's gradients exist. The callback records each optimizer step in
``on_before_optimizer_step``, where Lightning guarantees the gradients are final: accumulated
over ``accumulate_grad_batches``, unscaled by the AMP plugin, all-reduced by DDP, not yet
clipped. It works with automatic and manual optimisation and several optimizers (each
``optimizer.step()`` is one recorded step, as ``trainer.global_step`` counts them; with several,
a step records only the layers its optimizer owns); the loss of a step is the mean of its
micro-batches' losses (from each ``training_step`` output). The recorded step numbers are
``trainer.global_step`` after the step, the loggers' numbering: a ``fit`` resumed from a
checkpoint (``ckpt_path``), or a second ``fit``, continues it. Each ``fit`` is a run of its own in
the run log (``read_run(log_dir, run=...)``, ``graddoctor watch-report --run``).

``GradDoctorCallback(autofix=True)`` also repairs the LightningModule and its optimizer in place
between two steps, as ``gd.watch(..., autofix=True)`` does (``integrations.autofixing``); the
module's ``example_input_array``, when set, is the batch its init audit and structural remedies
trace. It is off (one warning line, watching goes on) on several processes and with several
optimizers.

Example:
    >>> cb = GradDoctorCallback(flush_every=10)
    >>> cb.watcher is None  # attached at on_fit_start
    True
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from graddoctor.errors import InputError
from graddoctor.fix.autofix.actions import check_allowed
from graddoctor.integrations.autofixing import check_options, framework_watcher
from graddoctor.integrations.stepping import HookedWatcher, LossAverage
from graddoctor.report import Report


class RootForward:
    """Whether the LightningModule's own forward runs in training: watch samples activations on
    the watched module's forward, which a ``training_step`` calling a submodule (``self.net(x)``)
    never runs. ``check()`` (once, after the first recorded step) warns when it did not.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2))
        >>> seen = RootForward(net); _ = net(torch.ones(1, 2)); seen.check(); seen.ran
        True
    """

    def __init__(self, module: Any) -> None:
        self.ran = False
        self._handle: Any = module.register_forward_pre_hook(self._seen)

    def _seen(self, *_: Any) -> None:
        self.ran = True

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def check(self) -> None:
        """Warn once if the forward did not run by now; the hook comes off either way."""
        if self._handle is None:
            return
        self.close()
        if not self.ran:
            warnings.warn("graddoctor (Lightning): training_step did not call the LightningModule itself "
                          "(it calls a submodule, e.g. self.net(x)), so activation statistics (dead and "
                          "saturated units) are not recorded - call self(x) in training_step to have them",
                          stacklevel=2)


def _callback_bases() -> tuple[type, ...]:
    """Lightning's ``Callback`` classes that are installed (both packages: the callback is an
    instance of each, so either Trainer accepts it)."""
    bases: list[type] = []
    try:
        from lightning.pytorch import Callback as LCallback

        bases.append(LCallback)
    except ImportError:
        pass
    try:
        from pytorch_lightning import Callback as PLCallback

        if PLCallback not in bases:
            bases.append(PLCallback)
    except ImportError:
        pass
    if not bases:
        raise InputError("graddoctor.integrations.lightning needs Lightning - pip install 'graddoctor[lightning]'")
    return tuple(bases)


def _clip_config(trainer: Any) -> dict:
    """``{"max_grad_norm": v}`` for the Trainer's norm clip (``gradient_clip_val``), else {}: the
    gradients are read before it, so the clip-too-tight rule needs the threshold."""
    val = getattr(trainer, "gradient_clip_val", None)
    algo = str(getattr(trainer, "gradient_clip_algorithm", None) or "norm").lower()
    return {"max_grad_norm": float(val)} if val and algo.endswith("norm") else {}


class GradDoctorCallback(*_callback_bases()):  # type: ignore[misc]
    """Watch gradient flow in a Lightning ``Trainer``: per-layer gradient norms at every
    optimizer step, findings logged to the trainer's loggers and warned at the end of ``fit``.

    Args:
        log_dir: directory for ``watch.jsonl`` (read it with ``graddoctor watch-report``);
            None: records kept in memory only.
        autofix: True (or a list of remedy ids): repair in place during ``fit`` (see the module
            docstring); its events are in ``report().data["autofix"]``.
        **watch_options: passed to ``gd.watch`` (``flush_every``, ``activation_every``,
            ``sinks``, ...).

    Raises:
        InputError: a bad ``autofix`` value, or an unknown watch option (the close valid ones
            named: ``flushevery`` -> ``flush_every``).

    Example:
        >>> import lightning.pytorch as pl
        >>> cb = GradDoctorCallback(flush_every=20)
        >>> isinstance(cb, pl.Callback)  # then: pl.Trainer(callbacks=[cb]).fit(...); cb.report()
        True
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, *, autofix: bool | list[str] = False,
                 **watch_options: Any) -> None:
        super().__init__()
        if autofix is not False:
            check_allowed(autofix)
        check_options("GradDoctorCallback (Lightning)", watch_options, autofix)
        self.log_dir, self.watch_options, self.autofix = log_dir, watch_options, autofix
        self.watcher: HookedWatcher | None = None
        self._losses = LossAverage()
        self._stepped = False
        self._report: Report | None = None
        self._root: RootForward | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        optimizers = list(trainer.optimizers)
        options = dict(self.watch_options)
        example = getattr(pl_module, "example_input_array", None)
        if self.autofix is not False and example is not None:
            options.setdefault("example_inputs", example)
        off = (f"{trainer.world_size} processes: each rank would repair on its own records"
               if trainer.world_size > 1 else
               f"{len(optimizers)} optimizers: autofix rebinds one" if len(optimizers) > 1 else None)
        with warnings.catch_warnings():
            if len(optimizers) > 1:  # watch reads the first; the others hold the parameters it lacks
                warnings.filterwarnings("ignore", message=".*are not in the optimizer")
            self.watcher = framework_watcher(pl_module, optimizers[0] if optimizers else None, self.log_dir,
                                             autofix=self.autofix, off=off, optimizers=optimizers,
                                             extra_config=_clip_config(trainer), **options).attach()
        self._report = None

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if self.watcher is not None:  # a resumed fit has its checkpoint's global step by now
            self.watcher.start_at(trainer.global_step)
            self._root = RootForward(pl_module)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.watcher is not None:
            self.watcher.before_optimizer_step(optimizer)
            self._stepped = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None and pl_module.automatic_optimization:
            loss = loss * trainer.accumulate_grad_batches  # Lightning divides it for backward
        self._losses.add(loss)
        if self._stepped and self.watcher is not None and self.watcher.attached:
            self._stepped = False
            self.watcher.step(self._losses.take())
            if self._root is not None:
                self._root.check()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._root is not None:
            self._root.close()
        if self.watcher is not None:
            self.watcher.detach()  # every rank, while the process group is up (the last flush)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.watcher is None or self._report is not None or trainer.global_rank != 0:
            return
        self.watcher.detach()
        try:
            self._report = self.watcher.report()
        except Exception as e:  # noqa: BLE001 - never break the user's fit
            warnings.warn(f"graddoctor: the report failed ({type(e).__name__}: {e})", stacklevel=2)
            return
        _log_findings(trainer, self._report)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self._root is not None:
            self._root.close()
        if self.watcher is not None:
            self.watcher.detach()

    def report(self) -> Report:
        """The findings on the run so far (the training-time rules over ``records()``): the
        latest ``fit`` (an earlier one is an earlier run of the log: ``read_run(log_dir, run="first")``).

        Raises:
            InputError: before ``fit`` started.
        """
        if self._report is not None:
            return self._report
        return self._require().report()

    def records(self) -> tuple[dict, list[dict]]:
        """``(meta, steps)``: the run as in the run log (``Watcher.records()``).

        Raises:
            InputError: before ``fit`` started.
        """
        return self._require().records()

    def _require(self) -> HookedWatcher:
        if self.watcher is None:
            raise InputError("GradDoctorCallback has no run yet - pass it to Trainer(callbacks=[...]) and call fit()")
        return self.watcher


def _log_findings(trainer: Any, report: Report) -> None:
    """Each warning and error as a Python warning, and one metric per code (its count) in the trainer's loggers."""
    counts: dict[str, float] = {}
    for f in report.findings:
        counts[f"graddoctor/{f.code}"] = counts.get(f"graddoctor/{f.code}", 0.0) + 1.0
        if f.severity != "info":  # info is no fault: in the report, not a warning
            warnings.warn(f"graddoctor: {f.severity}: {f.code}: {f.message}", stacklevel=2)
    counts["graddoctor/findings"] = float(len(report.findings))
    for logger in getattr(trainer, "loggers", []) or []:
        try:
            logger.log_metrics(counts, step=trainer.global_step)
            logger.save()
        except Exception as e:  # noqa: BLE001 - a logger's failure is not the user's problem
            warnings.warn(f"graddoctor: could not log findings to {type(logger).__name__}: {e}", stacklevel=2)


__all__ = ["GradDoctorCallback"]
