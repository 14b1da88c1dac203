"""The demo's story and numbers: check, train under watch, repair, retrain, compare.

A 20-layer sigmoid MLP with PyTorch's default init on the digits data (8x8 handwriting):

1. ``check`` finds the problem before training;
2. training under ``watch`` shows it: a flat loss and gradients that shrink layer by layer;
3. ``repair`` applies the fix;
4. the repaired model trains under the same budget (same data order, optimizer, steps);
5. a before/after comparison, and one self-contained HTML report with every figure
   (``graddoctor report OUT`` rebuilds it from the run logs and result JSON left in OUT).

:func:`run_demo` does the work and returns the numbers; it tells a :class:`DemoView` what
happens (the ``graddoctor demo`` command's view prints it; the base view shows nothing).

Example:
    >>> parse_model("mlp:depth=3")
    ('mlp', {'depth': 3})
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import median
from typing import Any

import torch
from torch.nn import functional as F

from graddoctor import data, zoo
from graddoctor.diagnose.checkup import check
from graddoctor.diagnose.watching import watch
from graddoctor.errors import InputError
from graddoctor.fix.repairing import RepairResult, repair
from graddoctor.present import html
from graddoctor.report import Report
from graddoctor.train import accuracy, fit, sampled_batches

DEFAULT_MODEL = "mlp:depth=20,width=64,activation=sigmoid,init=default"
STEPS = 1000  # 20-layer ReLU nets, with or without BatchNorm, reach >= 92% on digits in 1000 Adam steps (seeds 0-5)
LOSS_EVERY = 10  # the loss is kept (and shown) every LOSS_EVERY steps

Profile = list[tuple[str, float]]


def parse_model(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME[:key=value,...]"`` -> (name, options); values parsed as int, float, None, True/False or str.

    Raises:
        InputError: an option is not ``key=value``.

    Example:
        >>> parse_model("mlp:depth=20,activation=sigmoid,init=default")
        ('mlp', {'depth': 20, 'activation': 'sigmoid', 'init': 'default'})
    """
    name, _, rest = spec.partition(":")
    opts: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise InputError(f"--model {spec!r}: options must be key=value, e.g. {DEFAULT_MODEL}")
        opts[key.strip()] = _value(value.strip())
    return name.strip(), opts


def _value(s: str) -> Any:
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return {"None": None, "True": True, "true": True, "False": False, "false": False}.get(s, s)


def grad_profile(meta: dict, steps: list[dict], last: float = 0.25) -> Profile:
    """(layer, median gradient norm over the last ``last`` fraction of steps), in execution order.

    Example:
        >>> grad_profile({"layers": [{"name": "0"}]}, [{"grad_norm": {"0": 2.0}}])
        [('0', 2.0)]
    """
    tail = steps[-max(1, int(len(steps) * last)):]
    out = []
    for layer in meta.get("layers", []):
        vals = [v for s in tail if isinstance(v := (s.get("grad_norm") or {}).get(layer["name"]), (int, float))
                and math.isfinite(v)]
        if vals:
            out.append((layer["name"], float(median(vals))))
    return out


def first_last_ratio(profile: Profile) -> float:
    """Gradient norm of the first (input-side) layer over the last (output) layer; nan if undefined.

    Example:
        >>> first_last_ratio([("0", 1e-6), ("1", 1e-3)])
        0.001
    """
    if len(profile) < 2 or profile[-1][1] <= 0:
        return math.nan
    return profile[0][1] / profile[-1][1]


class DemoView:
    """What the demo shows as it goes; this base view shows nothing (subclass it to print).

    Args:
        none; override the methods that should show their part of the story.

    Returns:
        Every method returns None (``training`` yields the progress callback).

    Raises:
        Nothing.

    Example:
        >>> class Titles(DemoView):
        ...     def section(self, title):
        ...         print(title)
        >>> Titles().section("1. check: before training")
        1. check: before training
    """

    def section(self, title: str) -> None:
        """A new part of the story begins."""

    def note(self, text: str) -> None:
        """A line of plain text."""

    def findings(self, report: Report) -> None:
        """A check or watch report, in brief."""

    @contextlib.contextmanager
    def training(self, label: str, steps: int) -> Iterator[Callable[[int, float], None]]:
        """Around a training run; yields ``progress(step, loss)``, called every few steps."""
        yield lambda step, loss: None

    def losses(self, label: str, losses: list[float]) -> None:
        """The losses kept during a run (every ``LOSS_EVERY`` steps and the last)."""

    def profiles(self, profiles: dict[str, Profile]) -> None:
        """Per-layer gradient profiles of the runs so far (label -> profile)."""

    def repair(self, result: RepairResult) -> None:
        """What ``repair`` did."""

    def before_after(self, res: dict[str, Any]) -> None:
        """The broken and repaired numbers side by side."""

    def verdict(self, res: dict[str, Any], num_classes: int) -> None:
        """The accuracies against chance, the report's path and the time taken."""


def run_demo(model: str = DEFAULT_MODEL, dataset: str = "digits", steps: int = STEPS,
             out: str | Path = "graddoctor-demo", batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
             view: DemoView | None = None) -> dict[str, Any]:
    """Run the demo; tell ``view`` as it goes; return the numbers (also in ``OUT/summary.json``).

    Runs torch on one thread (restored afterwards): the matrices are small, and one thread is
    fastest here and does not fight other processes for the cores.

    Args:
        model: zoo model as ``NAME[:key=value,...]``.
        dataset: an embedded classification dataset (digits, mnist1d).
        steps: Adam steps per model.
        out: folder for the run logs, the result JSON, ``summary.json`` and ``report.html``.
        batch_size: samples per step.
        lr: Adam's learning rate.
        seed: seed of the split, the weights and the batch order.
        view: what shows the story (default: nothing).

    Returns:
        ``{"model", "dataset", "steps", "broken", "repaired", "report", "seconds"}``; broken and
        repaired hold the losses, accuracies, gradient ratio and finding codes.

    Raises:
        InputError: an unknown model, bad options, or a dataset that is not a classification task.

    Example:
        >>> res = run_demo(out="/tmp/demo")  # doctest: +SKIP
        >>> res["broken"]["test_accuracy"] < 0.2 < 0.9 <= res["repaired"]["test_accuracy"]  # doctest: +SKIP
        True
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(model, dataset, steps, Path(out), batch_size, lr, seed, view or DemoView())
    finally:
        torch.set_num_threads(threads)


def _run(model: str, dataset: str, steps: int, out: Path, batch_size: int, lr: float, seed: int,
         view: DemoView) -> dict[str, Any]:
    t0 = time.perf_counter()
    name, opts = parse_model(model)
    bundle, broken = _model_and_data(name, opts, dataset, seed)
    out.mkdir(parents=True, exist_ok=True)  # only once the model and the data are there
    example, target = bundle.x_train[:256], bundle.y_train[:256]
    view.section(f"graddoctor demo: {name} ({_opts(opts)}) on {dataset}")
    view.note(f"{bundle!r}; training budget: {steps} steps of Adam(lr={lr:g}), batch {batch_size}, seed {seed}")
    budget = {"bundle": bundle, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "view": view}
    res: dict[str, Any] = {"model": model, "dataset": dataset, "steps": steps, "broken": {}, "repaired": {}}

    view.section("1. check: before training")
    check_before = check(broken, example, target=target)
    sections: dict[str, Report] = {"check (broken model)": check_before}
    view.findings(check_before)

    view.section("2. train under watch: the broken model")
    before = _train(broken, out / "broken", "broken", **budget)
    res["broken"].update(before["numbers"])
    sections["watch (broken model)"] = before["report"]
    view.findings(before["report"])
    view.profiles({"broken": before["profile"]})

    view.section("3. repair")
    findings = check_before.findings + before["report"].findings
    repaired = repair(broken, Report(findings, source="check+watch"), example_inputs=example)
    view.repair(repaired)
    sections["repair"] = Report([], "repair", repaired.to_dict())

    view.section("4. retrain the repaired model: same data order, optimizer and steps")
    check_after = check(repaired.model, example, target=target)
    sections["check (repaired model)"] = check_after
    res["repaired"]["check_codes"] = sorted(check_after.codes)
    after = _train(repaired.model, out / "repaired", "repaired", attach=repaired.attach, **budget)
    res["repaired"].update(after["numbers"])
    sections["watch (repaired model)"] = after["report"]
    view.findings(after["report"])
    view.profiles({"broken": before["profile"], "repaired": after["profile"]})
    res["broken"]["check_codes"] = sorted(check_before.codes)

    view.section("5. before / after")
    view.before_after(res)
    for title, report in sections.items():  # watch runs are in their watch.jsonl already
        if report.source != "watch":
            (out / (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".json")).write_text(report.to_json())
    res["report"] = str(html.write(out / "report.html", sections, title=f"graddoctor demo: {name} on {dataset}"))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(res, indent=2, default=str))
    view.verdict(res, bundle.num_classes)
    return res


def _model_and_data(name: str, opts: dict[str, Any], dataset: str, seed: int) -> tuple[data.Bundle, Any]:
    """The dataset, and the zoo model ``name`` sized to it (``opts`` gets the fitted sizes)."""
    if name not in zoo.registry:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(zoo.names())}")
    params = inspect.signature(zoo.registry[name]).parameters
    images = "in_channels" in params and dataset == "digits"  # conv nets see the digits as 1x8x8
    bundle = data.load(dataset, seed=seed, **({"flat": False} if images else {}))
    if bundle.task != "classification":
        raise InputError(f"the demo trains a classifier; dataset {dataset!r} is a {bundle.task} task "
                         "(try digits or mnist1d)")
    if ("input_size" in params or "input_dim" in params) and bundle.x_train.dim() == 2:
        bundle = as_sequences(bundle)  # recurrent nets and Transformers read a sequence
    fitted = {"in_features": int(bundle.x_train[0].numel()), "out_features": int(bundle.num_classes),
              "in_channels": int(bundle.x_train.shape[1]), "num_classes": int(bundle.num_classes), "seed": seed,
              "input_size": int(bundle.x_train.shape[-1]), "input_dim": int(bundle.x_train.shape[-1]),
              "output_size": int(bundle.num_classes), "task": "classification"}
    for key, value in fitted.items():
        if key in params:
            opts.setdefault(key, value)
    return bundle, zoo.build(name, **opts)


def as_sequences(bundle: data.Bundle) -> data.Bundle:
    """Flat inputs as sequences: 64 digit pixels as 8 rows of 8 (read row by row), any other
    length as that many steps of one value.

    Example:
        >>> as_sequences(data.load("digits")).input_shape
        (8, 8)
    """
    n = bundle.x_train.shape[1]
    rows = (8, 8) if n == 64 else (n, 1)
    return dataclasses.replace(bundle, x_train=bundle.x_train.reshape(-1, *rows),
                               x_test=bundle.x_test.reshape(-1, *rows), input_shape=rows)


def _opts(opts: dict[str, Any]) -> str:
    shown = ("in_features", "out_features", "in_channels", "num_classes", "seed", "input_size", "input_dim",
             "output_size", "task")
    return ", ".join(f"{k}={v}" for k, v in opts.items() if k not in shown)


def _train(model: Any, log_dir: Path, label: str, *, bundle: data.Bundle, steps: int, batch_size: int, lr: float,
           seed: int, view: DemoView, attach: Any = None) -> dict[str, Any]:
    """Train ``steps`` Adam steps under watch on random batches (order fixed by ``seed``)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if attach is not None:
        attach(opt)  # the repair's clipping hooks, if any
    x, y = bundle.x_train, bundle.y_train
    model.train()
    losses: list[float] = []
    with view.training(label, steps) as progress, watch(model, optimizer=opt, log_dir=log_dir,
                                                        example_inputs=x[:batch_size],
                                                        activation_every=max(1, steps // 40)) as w:
        def on_step(step: int, loss: torch.Tensor) -> None:
            w.step(loss)
            if step % LOSS_EVERY == 0 or step == steps:
                losses.append(loss.item())
                progress(step, losses[-1])

        fit(model, opt, sampled_batches(x, y, batch_size, seed), steps=steps, loss_fn=F.cross_entropy,
            on_step=on_step)
    view.losses(label, losses)
    report = w.report()
    profile = grad_profile(report.data["meta"], report.data["steps"])
    numbers = {
        "loss_first": losses[0] if losses else math.nan,
        "loss_last": median(losses[-5:]) if losses else math.nan,
        "test_accuracy": accuracy(model, bundle.x_test, bundle.y_test),
        "train_accuracy": accuracy(model, x, y),
        "grad_ratio_first_last": first_last_ratio(profile),
        "watch_codes": sorted(report.codes),
    }
    return {"report": report, "profile": profile, "numbers": numbers}


__all__ = ["DEFAULT_MODEL", "STEPS", "DemoView", "first_last_ratio", "grad_profile", "parse_model", "run_demo"]
