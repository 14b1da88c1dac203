"""``repair``: apply the remedies the findings call for; return a new model and what changed.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.report import Finding, Report
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(),
    ...                     nn.Linear(8, 2))
    >>> r = Report([Finding("saturating-hidden-activation", "warning", "sigmoid hidden", ["1", "3"])])
    >>> result = repair(net, r, example_inputs=torch.randn(16, 4))
    >>> [c.remedy for c in result.changes], type(net[1]).__name__, type(result.model[1]).__name__
    (['relu', 'he-init'], 'Sigmoid', 'ReLU')
"""

from __future__ import annotations

import contextlib
import copy
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.fix import remedies as registry
from graddoctor.fix.arguments import check_repair_args, remedy_ids
from graddoctor.fix.keep_architecture import keep_architecture_plan
from graddoctor.fix.planner import PlanStep, plan, plan_from_ids
from graddoctor.fix.remedies.base import Change, modules_by_name
from graddoctor.fix.tuning import calls_for_lr_find, optimizer_for, tune_lr
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding, Report, format_names


@dataclass
class RepairResult:
    """What ``repair`` returns: the repaired model and what was done to it.

    Args:
        model: the repaired model (a new one unless ``inplace=True``).
        changes: one ``Change`` per remedy applied or advised, in order.
        plan: the planner's steps (remedy id + reason).
        seconds: wall time spent repairing.
        lr: the learning rate the LR range test set (``tune_lr`` / ``keep_architecture``), or None.
        optimizer: the optimizer set to ``lr`` over the repaired model (the one passed when it
            holds the repaired parameters, else a new one of its type), or None.
        lr_find: the ``LRFindResult`` of that range test, or None.

    Returns:
        (what it offers) ``applied`` / ``manual``: the changes made / left to the user's code;
        ``attach(optimizer)``: the clipping hooks registered on a new optimizer;
        ``to_dict()``: JSON-able; ``str(result)``: what changed and why.

    Raises:
        Nothing: a result is plain data.

    Example:
        >>> from graddoctor.report import Finding, Report
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
        >>> res = repair(net, Report([Finding("saturating-hidden-activation", "warning", "tanh")]))
        >>> [c.remedy for c in res.applied]
        ['relu', 'he-init']
        >>> print(str(res).splitlines()[1])
          [applied] relu on 1 module(s): 1
    """

    model: nn.Module
    changes: list[Change] = field(default_factory=list)
    plan: list[PlanStep] = field(default_factory=list)
    seconds: float = 0.0
    lr: float | None = None
    optimizer: torch.optim.Optimizer | None = None
    lr_find: Any = None

    @property
    def theory(self) -> dict[str, Any] | None:
        """The mean-field init's details (theory, sigma_w, q*, predicted depth scales), or None."""
        return next((c.details for c in self.changes if "theory" in c.details), None)

    @property
    def applied(self) -> list[Change]:
        """Changes made to the model (kind "applied")."""
        return [c for c in self.changes if c.kind == "applied"]

    @property
    def manual(self) -> list[Change]:
        """Changes the user has to make in code (functional activations, RNN -> LSTM, ...)."""
        return [c for c in self.changes if c.kind == "manual" or c.details.get("manual")]

    def attach(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        """Register the clipping hooks on ``optimizer`` (built over ``result.model``); returns handles.

        Example:
            >>> from graddoctor.report import Finding, Report
            >>> net = nn.Linear(2, 2)
            >>> res = repair(net, Report([Finding("exploding-gradient", "error", "x")]))
            >>> handles = res.attach(torch.optim.SGD(res.model.parameters(), lr=0.1))
            >>> len(handles)
            1
        """
        return [optimizer.register_step_pre_hook(h) for c in self.changes for h in c.hooks
                if c.kind != "applied" or not c.handles]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: the changes, the plan and the time (the model is not included)."""
        return {"changes": [c.to_dict() for c in self.changes],
                "plan": [s.to_dict() for s in self.plan], "seconds": self.seconds, "lr": self.lr}

    def __str__(self) -> str:
        counts = {k: sum(c.kind == k for c in self.changes) for k in ("applied", "manual", "advice")}
        head = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "nothing to do"
        lines = [f"graddoctor repair: {head} ({self.seconds:.2f} s)"]
        for c in self.changes:
            where = f" on {len(c.modules)} module(s): {format_names(c.modules)}" if c.modules else ""
            lines.append(f"  [{c.kind}] {c.remedy}{where}")
            lines.append(f"      why: {c.why}")
            by_code: dict[str, list[str]] = {}
            for m in c.details.get("manual", []) or []:
                by_code.setdefault(m["code"], []).append(m["site"])
            for code, sites in by_code.items():
                lines.append(f"      code change needed: {code} (sites: {format_names(sites)})")
            if c.details.get("kept_gates"):
                lines.append(f"      kept: {format_names(c.details['kept_gates'])} (gates: their output "
                             "multiplies another tensor)")
            code = c.details.get("code")
            if code and c.kind != "applied":
                for line in code if isinstance(code, list) else [code]:
                    lines.append(f"      {'code change needed' if c.kind == 'manual' else 'do'}: {line}")
        return "\n".join(lines)


def repair(
    model: nn.Module,
    report: Report | list[Finding] | None,
    example_inputs: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    inplace: bool = False,
    remedies: list[str] | str | None = None,
    seed: int | None = 0,
    *,
    keep_architecture: bool = False,
    train_loader: Any = None,
    tune_lr: bool | None = None,
    loss_fn: Any = None,
    lr_find_options: dict[str, Any] | None = None,
) -> RepairResult:
    """Apply the remedies that ``report``'s findings call for; return a new model and what changed.

    Args:
        model: the model to repair; never mutated unless ``inplace=True``.
        report: a ``Report`` (or list of findings) from ``check``/``watch``; None runs ``check``.
        example_inputs: a batch (tensor, tuple or dict); needed by the structural
            remedies (norm insertion, residual, LSUV) and for precise activation sites.
        optimizer: the optimizer training the repaired model; clipping is registered on
            it when it owns the repaired model's parameters (``inplace=True``), else
            ``result.attach(new_optimizer)`` does it.
        inplace: change ``model`` itself.
        remedies: an explicit list of remedy ids, applied in that order (skips the planner);
            a string is one id, or ids separated by commas (``"relu,he-init"``).
        seed: seed for the re-drawn weights (the global RNG is restored afterwards);
            None uses the global RNG.
        keep_architecture: change no module (same types, same count): the activation, norm,
            skip and init steps of the plan become one init chosen from mean-field theory
            for the hidden activation (``graddoctor.fix.keep_architecture``), followed by the
            LR range test when ``train_loader`` is given.
        train_loader: batches for the LR range test (as for ``gd.lr_find``).
        tune_lr: run ``gd.lr_find`` on the repaired model where a finding (or the plan) calls
            for ``lr-find``, and set the optimizer's learning rate (``result.lr``,
            ``result.optimizer``); None: only with ``keep_architecture``. Needs ``train_loader``.
        loss_fn: the loss for the range test (as for ``gd.lr_find``).
        lr_find_options: other arguments of ``gd.lr_find`` (``start_lr``, ``num_steps``, ...).

    Returns:
        ``RepairResult`` with ``.model``, ``.changes``, ``.plan``; ``print(result)`` explains it.

    Raises:
        InputError: before any work, one line naming the argument and the fix: ``model`` is
            not an ``nn.Module``; ``report`` is not a Report, a list of findings or None; no
            report and no example inputs; an unknown remedy id; ``tune_lr=True`` without
            ``train_loader``; an argument of the wrong kind (``optimizer`` not an Optimizer,
            ``example_inputs`` holding no tensor, ``seed`` not an int >= 0, a flag not a bool,
            ``train_loader`` not iterable, ``lr_find_options`` not a dict of ``gd.lr_find``'s
            options: ``graddoctor.fix.arguments``).

    Example:
        >>> import graddoctor as gd
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.Sigmoid(),
        ...                     nn.Linear(8, 8), nn.Sigmoid(), nn.Linear(8, 2))
        >>> x = torch.randn(16, 4)
        >>> result = gd.repair(net, gd.check(net, x), example_inputs=x)
        >>> type(net[1]).__name__, type(result.model[1]).__name__
        ('Sigmoid', 'ReLU')

    Cost: one traced forward (``ModelMap``), shared by the planner and every remedy while it
    stays exact: the map ``check`` attached to the report (``report.model_map``) when it maps
    this very model object, unchanged since, else one new trace. A remedy that changes the
    architecture (norm insertion or replacement, skip connections) leaves a map that no longer
    describes the new model (new modules, new names, new data flow), so a later remedy that
    needs one traces the new model once; the planner orders the skips after the re-init so
    that the usual plans (swap, re-init, skips) need no second trace. Then one deep copy and
    the re-drawn weights. Python's cyclic garbage collector is paused meanwhile (repair's
    objects are freed by reference counting): a full collection of the process's heap, which
    repair's allocations would otherwise often trigger (~0.2 s at a few 100k live objects), is
    left to run later, not inside repair.
    """
    check_repair_args(example_inputs, optimizer, inplace, seed, keep_architecture, train_loader, tune_lr,
                      loss_fn, lr_find_options)
    remedies = remedy_ids(remedies)
    findings = _findings_of(report)
    with _gc_paused():
        result = _repair(model, report, example_inputs, optimizer, inplace, remedies, seed,
                         keep_architecture, tune_lr is True and train_loader is None)
        if tune_lr if tune_lr is not None else keep_architecture:
            t0 = time.perf_counter()
            _set_lr(result, findings, model, optimizer, train_loader, loss_fn, lr_find_options or {},
                    keep_architecture)
            result.seconds += time.perf_counter() - t0
        return result


def _findings_of(report: Any) -> list[Finding]:
    """``report``'s findings (a ``Report``, a list of ``Finding``, or None); else a one-line InputError."""
    if report is None:
        return []
    if isinstance(report, Report):
        return report.findings
    if isinstance(report, (list, tuple)) and all(isinstance(f, Finding) for f in report):
        return list(report)
    bad = next((f for f in report if not isinstance(f, Finding)), None) \
        if isinstance(report, (list, tuple)) else report
    got = f"{type(bad).__name__} {bad!r}" if isinstance(bad, str) else type(bad).__name__
    got = got if bad is report else f"a list holding {got}"
    hint = ("; a watcher: pass watcher.report()" if callable(getattr(report, "report", None)) else
            "; to apply remedies by id pass remedies=[...]" if isinstance(bad, str)
            and bad in registry.REMEDIES else "")
    raise InputError(f"gd.repair: report must be the Report of gd.check(model, x) or of a watch "
                     f"(.report()), a list of its findings, or None to run check; got {got}{hint}")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _set_lr(result: RepairResult, findings: list[Finding], model: nn.Module,
            optimizer: torch.optim.Optimizer | None, train_loader: Any, loss_fn: Any,
            options: dict[str, Any], keep: bool) -> None:
    """The LR range test on the repaired model where the findings, the plan or ``keep`` ask for it."""
    asked = keep or calls_for_lr_find(findings, [s.remedy for s in result.plan])
    if not asked:
        return
    if train_loader is None:
        result.changes.append(Change("lr-find", [], "keep_architecture: pass train_loader=<batches> "
                                     "to run the LR range test and set the learning rate", "advice"))
        return
    opt = optimizer_for(model, result.model, optimizer) if optimizer is not None else None
    # the default pick (minimum) with keep_architecture too: valley picked rates decades too low
    # (digits, Adam, 6 epochs, 20-layer tanh 2.7e-5: 0.847 vs 0.944, sigmoid 3.9e-5: 0.515 vs 0.919,
    # 200-layer tanh 1.0e-5: 0.916 vs 0.942; benchmarks/README.md, depth)
    lr_result, change = tune_lr(result.model, opt, train_loader, loss_fn, None, **options)
    result.changes = [c for c in result.changes if not (c.remedy == "lr-find" and c.kind == "advice")
                      and not (c.remedy == "optimizer" and opt is not None)]
    result.changes.append(change)
    result.lr_find, result.lr = lr_result, lr_result.suggestion
    if opt is not None:
        result.optimizer = opt
        if opt is not optimizer:
            result.attach(opt)


def _repair(model: nn.Module, report: Report | list[Finding] | None, example_inputs: Any,
            optimizer: torch.optim.Optimizer | None, inplace: bool, remedies: list[str] | None,
            seed: int | None, keep_architecture: bool = False, no_loader: bool = False
            ) -> RepairResult:
    t0 = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise InputError(f"repair needs an nn.Module, got {type(model).__name__}")
    if no_loader:
        raise InputError("tune_lr=True runs the LR range test, which needs train_loader=<batches>")
    if report is None:
        if example_inputs is None:
            raise InputError("repair without a report runs check, which needs example_inputs=<a batch>")
        from graddoctor.diagnose.checkup import check

        report = check(model, example_inputs)
    findings = report.findings if isinstance(report, Report) else list(report)
    # one ModelMap shared along the plan: check's, or built once (the planner's), handed from
    # remedy to remedy while it stays exact (``Change.mmap``, ``Remedy.keeps_map``), rebuilt
    # lazily by the next remedy that needs one after a structural change
    mmap = report_map(report, model)
    if mmap is None and remedies is None and example_inputs is not None:
        mmap = ModelMap(model, example_inputs)  # valid for the deep copy too: same names
    steps = plan_from_ids(list(remedies)) if remedies is not None else plan(
        report, model, example_inputs, optimizer, mmap=mmap)
    if keep_architecture and remedies is None:
        steps = keep_architecture_plan(steps, model, example_inputs, mmap)
    new = model if inplace else copy.deepcopy(model)
    owned = optimizer is not None and _owns(optimizer, new)
    changes: list[Change] = []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for step in steps:
            entry = registry.get(step.remedy)
            if entry.needs_inputs and example_inputs is None:
                changes.append(Change(step.remedy, [], f"{step.reason}: needs example_inputs to "
                                      "apply; pass example_inputs=<a batch>", "advice"))
                continue
            new, change = registry.apply(
                step.remedy, new, example_inputs, inplace=True, optimizer=optimizer if owned else None,
                mmap=mmap, findings=[f for f in findings if f.code in step.codes], **step.options)
            mmap = change.mmap if change.mmap is not None else mmap if entry.keeps_map else None
            change.mmap = None  # not kept in the result
            change.why = f"{step.reason} -> {change.why}" if step.reason != "requested" else change.why
            change.details.setdefault("codes", step.codes)
            changes.append(change)
    if optimizer is not None:
        known = {id(p) for g in optimizer.param_groups for p in g["params"]}
        missing = [n for n, p in new.named_parameters() if id(p) not in known]
        if missing:
            changes.append(_rebuild_optimizer(missing))
    return RepairResult(new, changes, steps, time.perf_counter() - t0)


def report_map(report: Report | list[Finding], model: nn.Module) -> ModelMap | None:
    """The ``ModelMap`` that ``check`` attached to ``report`` (``report.model_map``), when it maps
    this very model object (``model_map.model is model``) and still describes it (every traced
    call's module is there, same name, same type: no surgery since); else None.

    Args:
        report: a ``Report`` (or a list of findings: None).
        model: the model to repair.

    Returns:
        The map, or None (repair then traces the model itself).

    Raises:
        Nothing.

    Example:
        >>> import torch
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Tanh())
        >>> report_map(Report(), net) is None  # no map on the report
        True
    """
    mm = getattr(report, "model_map", None)
    if mm is None or getattr(mm, "model", None) is not model:
        return None
    mods = modules_by_name(model)
    if any(c.name not in mods or type(mods[c.name]).__name__ != c.type for c in mm.calls):
        return None
    return mm


def _rebuild_optimizer(missing: list[str]) -> Change:
    return Change("optimizer", [], f"{len(missing)} parameters of the repaired model are not in "
                    "the optimizer (new model or new layers)", "manual",
                    {"code": "optimizer = type(optimizer)(result.model.parameters(), ...); "
                             "result.attach(optimizer)", "missing": missing[:20]})


def _owns(optimizer: torch.optim.Optimizer, model: nn.Module) -> bool:
    ids = {id(p) for p in model.parameters()}
    return all(id(p) in ids for g in optimizer.param_groups for p in g["params"])


__all__ = ["RepairResult", "repair", "report_map"]
