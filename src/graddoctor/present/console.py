"""Terminal pieces: a report in brief, sparklines and short number formats (rich).

Example:
    >>> sparkline([0, 0.5, 1], 0, 1), sci(1234.5), sci(float("nan"))
    ('▁▅█', '1.2e+03', '-')
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from graddoctor.report import Report, event_block

_SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan"}


def print_findings(console: Console, report: Report) -> None:
    """The report in brief: its verdict, per finding its severity, code, message and remedies,
    then its events (autofix rounds), one ``step N: ...`` line each, in step order.

    Args:
        console: where to print.
        report: a check, watch or repair report (the evidence is left to the HTML report).

    Returns:
        None.

    Raises:
        Nothing.

    Example:
        >>> import io
        >>> from graddoctor.report import Finding
        >>> c = Console(file=io.StringIO(), width=80, color_system=None)
        >>> print_findings(c, Report([Finding("poor-init", "warning", "weights too small", ["he-init"])]))
        >>> "poor-init: weights too small" in c.file.getvalue()
        True
    """
    console.print(Text(report.summary(), style="bold green" if report.ok else "bold red"))
    if report.findings:
        _print_grid(console, report)
    _print_events(console, event_block(report.data))


def _print_grid(console: Console, report: Report) -> None:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    for f in report.findings:
        text = Text.assemble((f.code, "bold"), f": {f.message}")
        if f.remedies:
            text.append(f"\nwhat to do: {', '.join(f.remedies)}", style="dim")
        grid.add_row(Text(f"  {f.severity:<7}", style=_SEVERITY_STYLE.get(f.severity, "")), text)
    console.print(grid)


def _print_events(console: Console, block: list[str]) -> None:
    if block:
        console.print(Text(block[0], style="bold"))
        for line in block[1:]:
            console.print(Text(line))


def sparkline(values: list[float], lo: float, hi: float) -> str:
    """One block character per value, scaled from ``lo`` to ``hi``; ``!`` for a non-finite value
    (a loss that went NaN), and a flat line when ``lo``/``hi`` are not finite.

    Example:
        >>> sparkline([0, 0.5, 1], 0, 1), sparkline([0, float("nan"), 1], 0, 1)
        ('▁▅█', '▁!█')
    """
    bars = "▁▂▃▄▅▆▇█"
    span = hi - lo if math.isfinite(hi - lo) and hi > lo else 1e-12
    base = lo if math.isfinite(lo) else 0.0
    return "".join(bars[max(0, min(7, int((v - base) / span * 8)))] if math.isfinite(v) else "!"
                   for v in values)


def sci(v: Any) -> str:
    """A number in short scientific notation; ``-`` for None or nan, ``str(v)`` for other values.

    Example:
        >>> sci(3.5e-17), sci(None), sci(3)
        ('3.5e-17', '-', '3')
    """
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.1e}"
    return str(v)


def pct(v: float | None) -> str:
    """A fraction as a percentage with one decimal; ``-`` for None.

    Example:
        >>> pct(0.969), pct(None)
        ('96.9%', '-')
    """
    return "-" if v is None else f"{100 * v:.1f}%"


__all__ = ["pct", "print_findings", "sci", "sparkline"]
