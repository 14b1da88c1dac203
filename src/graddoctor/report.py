"""Report and Finding: what check() and watch() return.

Example:
    >>> from graddoctor.report import Finding, Report
    >>> f = Finding("vanishing-gradient", "error", "gradients shrink 1e9x", layers=["0"])
    >>> r = Report([f])
    >>> r.ok, sorted(r.codes)
    (False, ['vanishing-gradient'])
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from graddoctor.codes import FINDING_CODES, SEVERITIES

_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}


@dataclass
class Finding:
    """One problem found, with the numbers that justify it and what to do.

    Args:
        code: a stable finding code (see ``graddoctor.codes.FINDING_CODES``).
        severity: "error" | "warning" | "info".
        message: one human sentence.
        layers: module names as in ``model.named_modules()``.
        evidence: numbers that justify the finding.
        remedies: remedy ids, best first.
        step: training step where first seen (0 = at initialisation), or None.
        reference: paper or doc the rule rests on.

    Raises:
        ValueError: ``code`` is no known finding code, or ``severity`` no known severity.

    Example:
        >>> f = Finding("dead-relu", "warning", "60% of units never fire", layers=["2"])
        >>> f.to_dict()["layers"], f.step
        (['2'], None)
    """

    code: str
    severity: str
    message: str
    layers: list[str] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)
    step: int | None = None
    reference: str = ""

    def __post_init__(self) -> None:
        if self.code not in FINDING_CODES:
            raise ValueError(f"unknown finding code {self.code!r}; known: {sorted(FINDING_CODES)}")
        if self.severity not in _SEVERITY_RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON types (non-finite evidence as "nan"/"inf"/"-inf")."""
        return jsonable(asdict(self))


def _any_gradient(steps: Any) -> bool:
    """A watch run's step records hold at least one gradient norm (True when there are no
    records to look at: a report built without them says nothing about gradients).

    Example:
        >>> _any_gradient([{"grad_norm": {"a": None}}]), _any_gradient([{"grad_norm": {"a": 0.1}}])
        (False, True)
    """
    if not isinstance(steps, list) or not steps:
        return True
    return any(v is not None for s in steps if isinstance(s, dict)
               for v in (s.get("grad_norm") or {}).values())


@dataclass
class Report:
    """Findings plus the raw data they were drawn from: what ``check`` and ``watch`` return.

    Args:
        findings: the findings, any order (kept sorted by severity, errors first).
        source: "check", "watch" or "repair".
        data: raw numbers (per-layer series, probe profiles, ...), JSON-able.
        model_map: the ``ModelMap`` that ``check`` traced (so ``repair`` need not trace the
            model again); not serialised, not compared, not shown.

    Example:
        >>> r = Report([Finding("loss-plateau", "info", "flat"), Finding("non-finite", "error", "NaN")], "watch")
        >>> [f.code for f in r.findings], r.ok
        (['non-finite', 'loss-plateau'], False)
        >>> Report.from_dict(r.to_dict()).codes == r.codes
        True
    """

    findings: list[Finding] = field(default_factory=list)
    source: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    model_map: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.findings = sorted(self.findings, key=lambda f: _SEVERITY_RANK[f.severity])

    @property
    def codes(self) -> set[str]:
        """The codes of the findings."""
        return {f.code for f in self.findings}

    @property
    def ok(self) -> bool:
        """True when no finding has severity "error"."""
        return not any(f.severity == "error" for f in self.findings)

    def by_code(self, code: str) -> list[Finding]:
        """The findings with code ``code``, most severe first."""
        return [f for f in self.findings if f.code == code]

    def summary(self) -> str:
        """One line: verdict and counts per severity."""
        if not self.findings:
            if self.source == "repair":  # a repair result's report: its changes, not findings
                return f"graddoctor repair: {len(self.data.get('changes') or [])} change(s)"
            idle = self.data.get("idle_wsteps") if self.source == "watch" else None
            if idle:
                return (f"graddoctor watch: nothing judged - w.step() was called {idle['calls']} times but the "
                        f"{idle['optimizer']} given to watch() never stepped: pass the optimizer you step "
                        "(a SAM-style wrapper that steps its base optimizer: watch the base optimizer)")
            if self.source == "watch" and self.data.get("rank"):
                return (f"graddoctor watch: nothing judged on rank {self.data['rank']} - the records are kept "
                        "and judged on rank 0: call w.report() there")
            if self.source == "watch" and self.data.get("steps") == [] and "meta" in self.data:
                every = (self.data["meta"].get("config") or {}).get("flush_every", "flush_every")
                return (f"graddoctor watch: nothing judged - no step recorded (records reach the log every "
                        f"{every} steps: a run stopped before its first flush, or w.step(loss) never called)")
            if self.source == "watch" and not _any_gradient(self.data.get("steps")):  # not "clean"
                return ("graddoctor watch: nothing judged - no gradient reached the model on any recorded "
                        "step (is the optimizer the one that trains this model?)")
            return f"graddoctor {self.source or 'report'}: no findings"
        counts = {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}
        parts = [f"{n} {s}{'s' if n != 1 else ''}" for s, n in counts.items() if n]
        verdict = "OK" if self.ok else "PROBLEMS"
        codes = ", ".join(sorted(self.codes))
        return f"graddoctor {self.source or 'report'}: {verdict} - {', '.join(parts)} ({codes})"

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON types: source, ok, codes, findings, data."""
        return {
            "source": self.source,
            "ok": self.ok,
            "codes": sorted(self.codes),
            "findings": [f.to_dict() for f in self.findings],
            "data": jsonable(self.data),
        }

    def to_json(self, **kwargs: Any) -> str:
        """``to_dict`` as a JSON string; ``kwargs`` go to ``json.dumps`` (indent 2 by default)."""
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The report ``to_dict`` wrote (non-finite evidence stays as strings).

        Raises:
            ValueError: a finding with an unknown code or severity.
            TypeError: a finding with a field ``Finding`` does not have.
        """
        return cls([Finding(**f) for f in d.get("findings", [])], d.get("source", ""), d.get("data", {}))

    def __str__(self) -> str:
        lines = [self.summary()]
        for f in self.findings:
            lines.append(f"  [{f.severity}] {f.code}: {f.message}")
            if f.step is not None:
                lines.append(f"      first seen: step {f.step}")
            if f.layers:
                lines.append(f"      layers: {format_names(f.layers)}")
            if f.evidence:
                lines.append("      evidence: " + ", ".join(f"{k}={format_value(v)}" for k, v in f.evidence.items()))
            if f.remedies:
                lines.append(f"      what to do: {', '.join(f.remedies)}")
            if f.reference:
                lines.append(f"      reference: {f.reference}")
        return "\n".join(lines + event_block(self.data))

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        title = Text(self.summary(), style="bold green" if self.ok else "bold red")
        block = event_block(self.data)
        shown = Text("\n".join(block))
        if not self.findings:
            return Group(title, shown) if block else title
        table = Table(show_lines=True)
        for col in ("severity", "code", "layers", "evidence", "what to do"):
            table.add_column(col, overflow="fold")
        style = {"error": "red", "warning": "yellow", "info": "cyan"}
        for f in self.findings:
            table.add_row(
                Text(f.severity, style=style[f.severity]),
                Text(f"{f.code}\n{f.message}" + (f"\n(first seen: step {f.step})" if f.step is not None else "")),
                Text(format_names(f.layers)),
                Text("\n".join(f"{k}={format_value(v)}" for k, v in list(f.evidence.items())[:6])),
                Text(", ".join(f.remedies) + (f"\n({f.reference})" if f.reference else "")),
            )
        return Group(title, table, shown) if block else Group(title, table)


def run_events(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a report's ``data`` in step order: ``data["events"]`` (``Watcher.log_event``,
    ``runlog.read_events``), else the autofix rounds of ``data["autofix"]``.

    Example:
        >>> run_events({"autofix": [{"step": 40, "message": "step 40: x"}, {"step": 9}]})[0]["step"]
        9
        >>> run_events({"steps": []})
        []
    """
    events = data.get("events") if isinstance(data, dict) else None
    if not isinstance(events, list):
        rounds = data.get("autofix") if isinstance(data, dict) else None
        events = [{"kind": "autofix", **e} for e in rounds or [] if isinstance(e, dict)]
    good = [e for e in events if isinstance(e, dict) and isinstance(e.get("step"), int)]
    return sorted(good, key=lambda e: e["step"])


def event_line(e: dict[str, Any]) -> str:
    """One event as one line, ``step N: ...`` (its message, or its kind and codes).

    Example:
        >>> event_line({"step": 37, "kind": "autofix", "codes": ["vanishing-gradient"]})
        'step 37: autofix (vanishing-gradient)'
    """
    msg = e.get("message")
    if isinstance(msg, str) and msg:
        return msg if msg.startswith("step ") else f"step {e['step']}: {msg}"
    codes = ", ".join(str(c) for c in e.get("codes") or [])
    return f"step {e['step']}: {e.get('kind', 'event')}" + (f" ({codes})" if codes else "")


def events_title(events: list[dict[str, Any]]) -> str:
    """"Autofix" when every event is an autofix round, else "Events".

    Example:
        >>> events_title([{"kind": "autofix"}]), events_title([{"kind": "note"}])
        ('Autofix', 'Events')
    """
    return "Autofix" if all(e.get("kind") == "autofix" for e in events) else "Events"


def event_block(data: Any) -> list[str]:
    """A report's events as lines: the title, one line per event, and (after autofix) the
    repaired run judged on its own (``after_fix_line``); empty without events.

    Example:
        >>> event_block({"autofix": [{"step": 10, "message": "step 10: x"}],
        ...              "after_fix": {"from_step": 10, "steps": 50, "findings": []}})
        ['Autofix:', '  step 10: x', '  after the fix of step 10 (50 steps): no findings']
    """
    events = run_events(data)
    if not events:
        return []
    after = after_fix_line(data.get("after_fix") if isinstance(data, dict) else None)
    return [f"{events_title(events)}:", *(f"  {event_line(e)}" for e in events), *([f"  {after}"] if after else [])]


def after_fix_line(after: dict[str, Any] | None) -> str | None:
    """The repaired run judged on its own (``data["after_fix"]`` of a watch report) as one line.

    Example:
        >>> after_fix_line({"from_step": 10, "steps": 90, "findings": []})
        'after the fix of step 10 (90 steps): no findings'
        >>> after_fix_line({"from_step": 10, "steps": 90, "findings": [{"code": "dead-relu", "severity": "warning"}]})
        'after the fix of step 10 (90 steps): warning dead-relu'
        >>> after_fix_line({"from_step": 40, "steps": 460, "findings": [], "loss_start": 1.39, "loss_end": 0.0079})
        'after the fix of step 40 (460 steps; loss 1.39 -> 0.0079): no findings'
    """
    if not isinstance(after, dict) or not isinstance(after.get("from_step"), int):
        return None
    losses = (f"; loss {after['loss_start']:.4g} -> {after['loss_end']:.4g}"
              if isinstance(after.get("loss_start"), float) and isinstance(after.get("loss_end"), float) else "")
    head = f"after the fix of step {after['from_step']} ({after.get('steps', 0)} steps{losses}): "
    found = after.get("findings")
    if found is None:
        return head + "too few steps to judge the repaired run alone"
    if not found:
        return head + "no findings"
    return head + ", ".join(f"{f.get('severity')} {f.get('code')}" for f in found if isinstance(f, dict))


def format_names(names: list[str], keep: int = 4) -> str:
    """Module names for a one-line message: the first ``keep``, then how many more.

    Args:
        names: module names (``""``, the model itself, shows as ``<model>``).
        keep: how many names to show.

    Returns:
        The names joined by ", ", ending in ``... (+N)`` when some were left out.

    Example:
        >>> format_names(["", "0", "1", "2", "3", "4"])
        '<model>, 0, 1, 2, ... (+2)'
    """
    names = [n or "<model>" for n in names]
    if len(names) <= keep:
        return ", ".join(names)
    return ", ".join(names[:keep]) + f", ... (+{len(names) - keep})"


def format_value(v: Any) -> str:
    """A piece of evidence as short text: floats to 3 significant digits, long lists cut to 3 values.

    Args:
        v: a number, a list or tuple of them, or anything printable.

    Returns:
        The text.

    Example:
        >>> format_value(0.123456), format_value([1.0, 2.5]), format_value(list(range(8)))
        ('0.123', '[1, 2.5]', '[0, 1, 2, ... (8 values)]')
    """
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return "[" + ", ".join(format_value(x) for x in v[:3]) + f", ... ({len(v)} values)]"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_value(x) for x in v) + "]"
    return str(v)


def jsonable(obj: Any) -> Any:
    """``obj`` in plain JSON types; non-finite floats become the strings "nan"/"inf"/"-inf".

    Dict keys become strings, tuples and sets lists, numpy/torch values their ``tolist()``,
    other objects their ``str``. The run log and every ``to_dict`` write through it.

    Args:
        obj: anything.

    Returns:
        A value ``json.dumps(..., allow_nan=False)`` accepts.

    Example:
        >>> jsonable({1: (float("inf"), None), "t": {0.5}})
        {'1': ['inf', None], 't': [0.5]}
    """
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch
        return jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)



__all__ = ["Finding", "Report", "after_fix_line", "event_block", "event_line", "events_title", "format_names", "format_value", "jsonable",
           "run_events"]
