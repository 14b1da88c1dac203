"""``graddoctor demo``: the whole story on real data, in under two minutes on two CPU cores.

The work and its numbers are :func:`graddoctor.demo.run_demo`; this module parses the
options and prints the story as it goes (:class:`ConsoleView`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule
from rich.table import Table

from graddoctor.demo import DEFAULT_MODEL, STEPS, DemoView, Profile, first_last_ratio, run_demo
from graddoctor.fix.repairing import RepairResult
from graddoctor.present.console import pct, print_findings, sci, sparkline
from graddoctor.report import Report


class ConsoleView(DemoView):
    """Prints the demo on a rich console: rules, findings, progress bars, tables.

    Args:
        console: where to print (default: a new rich Console on stdout).

    Returns:
        Every method returns None.

    Raises:
        Nothing.

    Example:
        >>> import io
        >>> view = ConsoleView(Console(file=io.StringIO(), width=40, color_system=None))
        >>> view.section("3. repair")
        >>> "3. repair" in view.console.file.getvalue()
        True
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def section(self, title: str) -> None:
        self.console.print(Rule(escape(title)))

    def note(self, text: str) -> None:
        self.console.print(escape(text))

    def findings(self, report: Report) -> None:
        print_findings(self.console, report)

    @contextlib.contextmanager
    def training(self, label: str, steps: int) -> Iterator[Callable[[int, float], None]]:
        columns = (TextColumn(f"[bold]{label:>9}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(label, total=steps, loss="-")
            yield lambda step, loss: progress.update(task, completed=step, loss=f"{loss:.3f}")

    def losses(self, label: str, losses: list[float]) -> None:
        if not losses:
            return
        k = math.ceil(len(losses) / 40)  # at most 40 characters
        means = [sum(losses[i:i + k]) / len(losses[i:i + k]) for i in range(0, len(losses), k)]
        top = max((m for m in means if math.isfinite(m)), default=1.0)  # a NaN loss reads "!"
        self.console.print(f"{label:>9} loss {sparkline(means, 0, top)}  {losses[0]:.3f} → {losses[-1]:.3f}")

    def profiles(self, profiles: dict[str, Profile]) -> None:
        print_profiles(self.console, profiles)

    def repair(self, result: RepairResult) -> None:
        self.console.print(str(result), markup=False, highlight=False)

    def before_after(self, res: dict[str, Any]) -> None:
        self.console.print(before_after_table(res))

    def verdict(self, res: dict[str, Any], num_classes: int) -> None:
        b, r = res["broken"].get("test_accuracy"), res["repaired"].get("test_accuracy")
        if b is not None:
            self.console.print(f"broken model: test accuracy {pct(b)} (chance: {pct(1 / num_classes)})")
        if r is not None:
            ok = "[green]>= 90%[/]" if r >= 0.9 else "[red]below the 90% expected on digits[/]" \
                if res["dataset"] == "digits" else ""
            self.console.print(f"repaired model: test accuracy {pct(r)} {ok}".rstrip())
        self.console.print(f"HTML report: [bold]{escape(res['report'])}[/] (self-contained: open it in any browser)")
        self.console.print(f"done in {res['seconds']:.0f} s")


def print_profiles(console: Console, profiles: dict[str, Profile]) -> None:
    """Per-layer gradient norm (median over the last quarter of training) as a table of log-scale bars.

    Args:
        console: where to print.
        profiles: run label -> [(layer, gradient norm)], input side first; empty runs are left out.

    Returns:
        None.

    Raises:
        Nothing.

    Example:
        >>> import io
        >>> c = Console(file=io.StringIO(), width=80, color_system=None)
        >>> print_profiles(c, {"broken": [("0", 1e-9), ("1", 1e-3)]})
        >>> "first/last layer gradient ratio 1.0e-06" in c.file.getvalue()
        True
    """
    profiles = {k: v for k, v in profiles.items() if v}
    if not profiles:
        return
    logs = [math.log10(v) for p in profiles.values() for _, v in p if v > 0]
    lo, hi = min(logs), max(logs)
    console.print("[bold]gradient norm by layer[/], input → output (median over the last quarter of steps)")
    table = Table(box=None, pad_edge=False)
    # one layer column for all runs when they have the same layers; else each run its own (a
    # repair that wraps blocks renames and adds layers: row i is not the same layer in both)
    shared = len({tuple(n for n, _ in p) for p in profiles.values()}) == 1
    if shared:
        table.add_column("layer")
    width = 30 if len(profiles) == 1 else 14
    for label in profiles:
        if not shared:
            table.add_column(f"{label} layer")
        table.add_column(f"{label}", justify="right", no_wrap=True)
        table.add_column(f"log10 {lo:.0f} … {hi:.0f}", no_wrap=True, min_width=width)
    for i in range(max(len(p) for p in profiles.values())):
        cells = [escape(next(iter(profiles.values()))[i][0])] if shared else []
        for p in profiles.values():
            if not shared:
                cells.append(escape(p[i][0]) if i < len(p) else "")
            if i < len(p) and p[i][1] > 0:
                frac = (math.log10(p[i][1]) - lo) / max(hi - lo, 1e-9)
                color = "red" if math.log10(p[i][1]) < hi - 3 else "green"
                cells += [f"{p[i][1]:.1e}", f"[{color}]{'█' * (1 + round(frac * (width - 1)))}[/]"]
            else:
                cells += ["-" if i < len(p) else "", ""]
        table.add_row(*cells)
    console.print(table)
    for label, p in profiles.items():
        spark = sparkline([math.log10(v) for _, v in p if v > 0], lo, hi)
        console.print(f"{label:>9} {spark}  first/last layer gradient ratio {sci(first_last_ratio(p))}")


def before_after_table(res: dict[str, Any]) -> Table:
    """The broken and repaired runs side by side: findings, gradient ratio, loss, test accuracy.

    Args:
        res: :func:`graddoctor.demo.run_demo`'s result (its ``broken`` and ``repaired`` numbers).

    Returns:
        A rich Table.

    Raises:
        Nothing (a number not measured shows as ``-``).

    Example:
        >>> before_after_table({"broken": {"test_accuracy": 0.1}, "repaired": {}}).row_count
        5
    """
    b, r = res["broken"], res["repaired"]
    table = Table(title="before / after (same budget)", title_justify="left")
    table.add_column("", no_wrap=True)
    table.add_column("broken", style="red")
    table.add_column("repaired", style="green")

    def codes(d: dict, key: str) -> str:
        v = d.get(key)
        return "-" if v is None else (", ".join(v) or "none")

    def loss(d: dict) -> str:
        return f"{d['loss_first']:.3f} → {d['loss_last']:.3f}" if "loss_first" in d else "-"

    table.add_row("check findings", codes(b, "check_codes"), codes(r, "check_codes"))
    table.add_row("watch findings", codes(b, "watch_codes"), codes(r, "watch_codes"))
    table.add_row("gradient ratio first/last layer", sci(b.get("grad_ratio_first_last")),
                  sci(r.get("grad_ratio_first_last")))
    table.add_row("train loss (first → median of last 5)", loss(b), loss(r))
    table.add_row("test accuracy", pct(b.get("test_accuracy")), pct(r.get("test_accuracy")))
    return table


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
    from graddoctor.cli.paths import writable_dir

    writable_dir(out, "--out")  # before training, not after it
    run_demo(model, dataset, steps, out, batch_size, lr, seed, view=ConsoleView())
