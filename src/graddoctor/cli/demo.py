"""``graddoctor demo``: the whole story on real data, in under two minutes on two CPU cores.

A 20-layer sigmoid MLP with PyTorch's default init on the digits data (8x8 handwriting):

1. ``check`` finds the problem before training;
2. training under ``watch`` shows it: a flat loss and gradients that shrink layer by layer;
3. ``repair`` applies the fix;
4. the repaired model trains under the same budget (same data order, optimizer, steps);
5. a before/after table, and one self-contained HTML report with every figure
   (``graddoctor report OUT`` rebuilds it from the run logs and result JSON left in OUT).

``run_demo`` does the work and returns the numbers; the click command only parses options.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import time
from importlib import import_module
from pathlib import Path
from statistics import median
from typing import Any

import click

from graddoctor.errors import InputError

DEFAULT_MODEL = "mlp:depth=20,width=64,activation=sigmoid,init=default"
STEPS = 1000  # 20-layer ReLU nets, with or without BatchNorm, reach >= 92% on digits in 1000 Adam steps (seeds 0-5)


def parse_model(spec: str) -> tuple[str, dict[str, Any]]:
    """``"NAME[:key=value,...]"`` -> (name, options); values parsed as int, float, None, True/False or str.

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


_MODULES = {"check": "graddoctor.diagnose.checkup", "watch": "graddoctor.diagnose.watching",
            "repair": "graddoctor.fix.repairing"}


def _module(name: str) -> Any:
    """``graddoctor.<name>``, or None when that part of graddoctor is not installed/built."""
    try:
        return import_module(_MODULES.get(name, f"graddoctor.{name}"))
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("graddoctor"):
            return None
        raise


# ----------------------------------------------------------------------------- numbers


def grad_profile(meta: dict, steps: list[dict], last: float = 0.25) -> list[tuple[str, float]]:
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


def first_last_ratio(profile: list[tuple[str, float]]) -> float:
    """Gradient norm of the first (input-side) layer over the last (output) layer."""
    if len(profile) < 2 or profile[-1][1] <= 0:
        return math.nan
    return profile[0][1] / profile[-1][1]


def _accuracy(model: Any, x: Any, y: Any) -> float:
    import torch

    was = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    model.train(was)
    return acc


# ----------------------------------------------------------------------------- the story


def run_demo(model: str = DEFAULT_MODEL, dataset: str = "digits", steps: int = STEPS, out: str | Path = "graddoctor-demo",
             batch_size: int = 64, lr: float = 1e-3, seed: int = 0, console: Any = None) -> dict[str, Any]:
    """Run the demo; print it on ``console`` (rich); return the numbers (also in ``OUT/summary.json``).

    Runs torch on one thread (restored afterwards): the matrices are small, and one thread is
    fastest here and does not fight other processes for the cores.

    Example:
        >>> res = run_demo(out="/tmp/demo")  # doctest: +SKIP
        >>> res["broken"]["test_accuracy"] < 0.2 < 0.9 <= res["repaired"]["test_accuracy"]
        True
    """
    import torch
    from rich.console import Console

    console = console or Console()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(model, dataset, steps, Path(out), batch_size, lr, seed, console)
    finally:
        torch.set_num_threads(threads)


def _run(model: str, dataset: str, steps: int, out: Path, batch_size: int, lr: float, seed: int,
         console: Any) -> dict[str, Any]:
    from rich.markup import escape
    from rich.rule import Rule

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    zoo, data = _module("zoo"), _module("data")
    if zoo is None or data is None:
        raise InputError("the demo needs graddoctor.zoo and graddoctor.data, which are not installed")
    check_mod, watch_mod, repair_mod = _module("check"), _module("watch"), _module("repair")

    name, opts = parse_model(model)
    if name not in zoo.registry:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(zoo.names())}")
    params = inspect.signature(zoo.registry[name]).parameters
    images = "in_channels" in params and dataset == "digits"  # conv nets see the digits as 1x8x8
    bundle = data.load(dataset, seed=seed, **({"flat": False} if images else {}))
    if bundle.task != "classification":
        raise InputError(f"the demo trains a classifier; dataset {dataset!r} is a {bundle.task} task "
                         "(try digits or mnist1d)")
    fitted = {"in_features": int(bundle.x_train[0].numel()), "out_features": int(bundle.num_classes),
              "in_channels": int(bundle.x_train.shape[1]), "num_classes": int(bundle.num_classes), "seed": seed}
    for key, value in fitted.items():
        if key in params:
            opts.setdefault(key, value)
    broken = zoo.build(name, **opts)
    example = bundle.x_train[:256]
    console.print(Rule(escape(f"graddoctor demo: {name} ({_opts(opts)}) on {dataset}")))
    console.print(escape(f"{bundle!r}; training budget: {steps} steps of Adam(lr={lr:g}), batch {batch_size}, "
                         f"seed {seed}"))

    sections: dict[str, Any] = {}
    res: dict[str, Any] = {"model": model, "dataset": dataset, "steps": steps, "broken": {}, "repaired": {}}

    # 1. check
    console.print(Rule("1. check: before training"))
    check_before = None
    if check_mod is None:
        missing.append("check")
        console.print("[yellow]skipped: graddoctor.diagnose.checkup is not available in this install[/]")
    else:
        check_before = check_mod.check(broken, example, target=bundle.y_train[:256])
        sections["check (broken model)"] = check_before
        _print_findings(console, check_before)

    # 2. train under watch
    console.print(Rule("2. train under watch: the broken model"))
    before = _train(broken, bundle, steps, batch_size, lr, seed, out / "broken", watch_mod, console, "broken")
    if watch_mod is None:
        missing.append("watch")
    res["broken"].update(before["numbers"])
    if before["report"] is not None:
        sections["watch (broken model)"] = before["report"]
        _print_findings(console, before["report"])
    _print_profiles(console, {"broken": before["profile"]})

    # 3. repair
    console.print(Rule("3. repair"))
    findings = [f for r in (check_before, before["report"]) if r is not None for f in r.findings]
    repaired = None
    if repair_mod is None:
        missing.append("repair")
        console.print("[yellow]skipped: graddoctor.fix.repairing is not available in this install: "
                      "nothing to retrain[/]")
    else:
        from graddoctor.report import Report

        result = repair_mod.repair(broken, Report(findings, source="check+watch"), example_inputs=example)
        console.print(str(result), markup=False, highlight=False)
        repaired = result
        sections["repair"] = Report([], "repair", result.to_dict())

    # 4. retrain, same budget
    if repaired is not None:
        console.print(Rule("4. retrain the repaired model: same data order, optimizer and steps"))
        if check_mod is not None:
            check_after = check_mod.check(repaired.model, example, target=bundle.y_train[:256])
            sections["check (repaired model)"] = check_after
            res["repaired"]["check_codes"] = sorted(check_after.codes)
        after = _train(repaired.model, bundle, steps, batch_size, lr, seed, out / "repaired", watch_mod, console,
                       "repaired", attach=repaired.attach)
        res["repaired"].update(after["numbers"])
        if after["report"] is not None:
            sections["watch (repaired model)"] = after["report"]
            _print_findings(console, after["report"])
        _print_profiles(console, {"broken": before["profile"], "repaired": after["profile"]})
    if check_before is not None:
        res["broken"]["check_codes"] = sorted(check_before.codes)

    # 5. before / after, and the report
    console.print(Rule("5. before / after"))
    console.print(_before_after(res))
    for title, report in sections.items():  # watch runs are in their watch.jsonl already
        if report.source != "watch":
            (out / (re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") + ".json")).write_text(report.to_json())
    if sections:
        from graddoctor.present import html as html

        path = html.write(out / "report.html", sections, title=f"graddoctor demo: {name} on {dataset}")
        res["report"] = str(path)
    res["missing"] = missing
    res["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "summary.json").write_text(json.dumps(res, indent=2, default=str))
    _verdict(console, res, bundle.num_classes)
    if "report" in res:
        console.print(f"HTML report: [bold]{escape(res['report'])}[/] (self-contained: open it in any browser)")
    console.print(f"done in {res['seconds']:.0f} s")
    return res


def _opts(opts: dict[str, Any]) -> str:
    shown = ("in_features", "out_features", "in_channels", "num_classes", "seed")
    return ", ".join(f"{k}={v}" for k, v in opts.items() if k not in shown)


def _train(model: Any, bundle: Any, steps: int, batch_size: int, lr: float, seed: int, log_dir: Path,
           watch_mod: Any, console: Any, label: str, attach: Any = None) -> dict[str, Any]:
    """Train ``steps`` Adam steps on random batches (order fixed by ``seed``), under watch if present."""
    import contextlib

    import torch
    import torch.nn.functional as F
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    if attach is not None:
        attach(opt)  # the repair's clipping hooks, if any
    gen = torch.Generator().manual_seed(seed)
    x, y = bundle.x_train, bundle.y_train
    model.train()
    if watch_mod is None:
        console.print("[yellow]graddoctor.diagnose.watching is not available in this install: training without it "
                      "(no gradient profile)[/]")
        ctx: Any = contextlib.nullcontext(None)
    else:
        ctx = watch_mod.watch(model, optimizer=opt, log_dir=log_dir, example_inputs=x[:batch_size],
                              activation_every=max(1, steps // 40))
    losses = []
    columns = (TextColumn(f"[bold]{label:>9}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress, ctx as w:
        task = progress.add_task(label, total=steps, loss="-")
        for step in range(1, steps + 1):
            idx = torch.randint(0, len(x), (batch_size,), generator=gen)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if w is not None:
                w.step(loss)
            if step % 10 == 0 or step == steps:
                losses.append(loss.item())
                progress.update(task, completed=step, loss=f"{losses[-1]:.3f}")
    if losses:
        k = math.ceil(len(losses) / 40)  # at most 40 characters
        means = [sum(losses[i:i + k]) / len(losses[i:i + k]) for i in range(0, len(losses), k)]
        console.print(f"{label:>9} loss {sparkline(means, 0, max(means))}  {losses[0]:.3f} → {losses[-1]:.3f}")
    report = w.report() if w is not None else None
    profile = grad_profile(report.data["meta"], report.data["steps"]) if report is not None else []
    numbers = {
        "loss_first": losses[0] if losses else math.nan,
        "loss_last": median(losses[-5:]) if losses else math.nan,
        "test_accuracy": _accuracy(model, bundle.x_test, bundle.y_test),
        "train_accuracy": _accuracy(model, x, y),
        "grad_ratio_first_last": first_last_ratio(profile),
        "watch_codes": sorted(report.codes) if report is not None else None,
    }
    return {"report": report, "profile": profile, "numbers": numbers}


def _print_findings(console: Any, report: Any) -> None:
    """The report in brief: verdict, then per finding its severity, code, message and remedies
    (the evidence is in the HTML report)."""
    from rich.table import Table
    from rich.text import Text

    console.print(Text(report.summary(), style="bold green" if report.ok else "bold red"))
    if not report.findings:
        return
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    style = {"error": "red", "warning": "yellow", "info": "cyan"}
    for f in report.findings:
        text = Text.assemble((f.code, "bold"), f": {f.message}")
        if f.remedies:
            text.append(f"\nwhat to do: {', '.join(f.remedies)}", style="dim")
        grid.add_row(Text(f"  {f.severity:<7}", style=style.get(f.severity, "")), text)
    console.print(grid)


def sparkline(values: list[float], lo: float, hi: float) -> str:
    """One block character per value, scaled from ``lo`` to ``hi``.

    Example:
        >>> sparkline([0, 0.5, 1], 0, 1)
        '▁▅█'
    """
    bars = "▁▂▃▄▅▆▇█"
    return "".join(bars[max(0, min(7, int((v - lo) / max(hi - lo, 1e-12) * 8)))] for v in values)


def _print_profiles(console: Any, profiles: dict[str, list[tuple[str, float]]]) -> None:
    """Per-layer gradient norm (median over the last quarter of training) as a table of log-scale bars."""
    from rich.markup import escape
    from rich.table import Table

    profiles = {k: v for k, v in profiles.items() if v}
    if not profiles:
        return
    logs = [math.log10(v) for p in profiles.values() for _, v in p if v > 0]
    lo, hi = min(logs), max(logs)
    console.print("[bold]gradient norm by layer[/], input → output (median over the last quarter of steps)")
    table = Table(box=None, pad_edge=False)
    table.add_column("layer")
    width = 30 if len(profiles) == 1 else 14
    for label in profiles:
        table.add_column(f"{label}", justify="right", no_wrap=True)
        table.add_column(f"log10 {lo:.0f} … {hi:.0f}", no_wrap=True, min_width=width)
    rows = max(len(p) for p in profiles.values())
    for i in range(rows):
        cells = []
        names = [p[i][0] for p in profiles.values() if i < len(p)]
        for p in profiles.values():
            if i < len(p) and p[i][1] > 0:
                frac = (math.log10(p[i][1]) - lo) / max(hi - lo, 1e-9)
                color = "red" if math.log10(p[i][1]) < hi - 3 else "green"
                cells += [f"{p[i][1]:.1e}", f"[{color}]{'█' * (1 + round(frac * (width - 1)))}[/]"]
            else:
                cells += ["-", ""]
        table.add_row(escape(names[0]) if names else "", *cells)
    console.print(table)
    for label, p in profiles.items():
        spark = sparkline([math.log10(v) for _, v in p if v > 0], lo, hi)
        console.print(f"{label:>9} {spark}  first/last layer gradient ratio {_sci(first_last_ratio(p))}")


def _sci(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.1e}"
    return str(v)


def _before_after(res: dict[str, Any]) -> Any:
    from rich.table import Table

    b, r = res["broken"], res["repaired"]
    table = Table(title="before / after (same budget)", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("broken", style="red")
    table.add_column("repaired", style="green")

    def codes(d: dict, key: str) -> str:
        v = d.get(key)
        return "-" if v is None else (", ".join(v) or "none")

    table.add_row("check findings", codes(b, "check_codes"), codes(r, "check_codes"))
    table.add_row("watch findings", codes(b, "watch_codes"), codes(r, "watch_codes"))
    table.add_row("gradient ratio first/last layer", _sci(b.get("grad_ratio_first_last")),
                  _sci(r.get("grad_ratio_first_last")))
    table.add_row("train loss (first → last)", _loss(b), _loss(r))
    table.add_row("test accuracy", _pct(b.get("test_accuracy")), _pct(r.get("test_accuracy")))
    return table


def _loss(d: dict) -> str:
    return f"{d['loss_first']:.3f} → {d['loss_last']:.3f}" if "loss_first" in d else "-"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _verdict(console: Any, res: dict[str, Any], num_classes: int) -> None:
    chance = 1 / num_classes
    b = res["broken"].get("test_accuracy")
    r = res["repaired"].get("test_accuracy")
    if b is not None:
        console.print(f"broken model: test accuracy {_pct(b)} (chance: {_pct(chance)})")
    if r is not None:
        ok = "[green]>= 90%[/]" if r >= 0.9 else "[red]below the 90% expected on digits[/]" \
            if res["dataset"] == "digits" else ""
        console.print(f"repaired model: test accuracy {_pct(r)} {ok}".rstrip())
    if res["missing"]:
        console.print(f"[yellow]not shown (missing from this install): {', '.join(res['missing'])}[/]")


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="zoo model as NAME[:key=value,...] (see graddoctor.zoo.names()).")
@click.option("--dataset", default="digits", show_default=True, help="embedded dataset (digits, mnist1d).")
@click.option("--steps", default=STEPS, show_default=True, type=click.IntRange(1), help="training steps per model.")
@click.option("--out", default="graddoctor-demo", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="folder for the run logs, summary.json and report.html.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
def demo(model: str, dataset: str, steps: int, out: Path, batch_size: int, lr: float, seed: int) -> None:
    """Watch graddoctor find, explain and fix vanishing gradients in a 20-layer sigmoid MLP."""
    run_demo(model, dataset, steps, out, batch_size, lr, seed)
