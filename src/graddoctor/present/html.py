"""The self-contained HTML report: findings on top, then each report's figures and data.

One file, no network: figures are inline base64 PNG, the raw data an inline JSON block, and a
Content-Security-Policy forbids the page from loading anything else. Every name and message
from the model is escaped.

Example:
    >>> from graddoctor.report import Finding, Report
    >>> page = render({"check": Report([Finding("poor-init", "warning", "w too small", ["<b>"])])})
    >>> "poor-init" in page and "&lt;b&gt;" in page and "<b>" not in page.split("<body>")[1]
    True
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from graddoctor import __version__
from graddoctor.errors import InputError
from graddoctor.report import (
    Finding,
    Report,
    after_fix_line,
    event_line,
    events_title,
    format_value,
    run_events,
)

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
#: step records embedded per run (the figures are drawn from all of them)
MAX_STEPS = 2000

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;max-width:1100px;
color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#f4f4f4} code{font-size:.95em}
.sev{font-weight:bold;border-radius:3px;padding:.1em .4em;color:#fff}
.error{background:#c0392b}.warning{background:#d68910}.info{background:#2e86c1}
.ok{color:#1e8449;font-weight:bold}.bad{color:#c0392b;font-weight:bold}
figure{margin:1em 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#555;font-size:.85em} .muted{color:#777}
details summary{cursor:pointer;color:#555}
"""


def render(reports: Report | Sequence[Report] | Mapping[str, Report], title: str = "graddoctor report",
           figures: bool = True) -> str:
    """The report page as one HTML string.

    Args:
        reports: one Report, several (titled by their ``source``), or a mapping title -> Report;
            shown in that order.
        title: page title.
        figures: draw each report's figures (``graddoctor.present.plots.figures``); needs matplotlib.

    Example:
        >>> page = render(gd.check(model, x))  # doctest: +SKIP
    """
    sections = _sections(reports)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">graddoctor {escape(__version__)} &middot; '
        + " &middot; ".join(_verdict(name, r) for name, r in sections.items()) + "</p>",
        '<nav><a href="#findings">Findings</a> &middot; '
        + " &middot; ".join(f'<a href="#section-{i}">{escape(n)}</a>' for i, n in enumerate(sections))
        + ' &middot; <a href="#data">Data</a></nav>',
        '<h2 id="findings">Findings</h2>',
        _findings_table(sections),
    ]
    for i, (name, report) in enumerate(sections.items()):
        summary = "" if report.source == "repair" and not report.findings else escape(report.summary())
        parts.append(f'<h2 id="section-{i}">{escape(name)}</h2><p>{summary}</p>')
        if report.data.get("changes"):
            parts.append(_changes_table(report.data["changes"]))
        events = run_events(report.data)
        if events:
            parts.append(_timeline_table(events))
            after = after_fix_line(report.data.get("after_fix"))
            if after:
                parts.append(f'<p class="after-fix">{escape(after)}</p>')
        if figures:
            parts.extend(_figures(report))
    payload = {name: _thin(r.to_dict()) for name, r in sections.items()}
    thinned = [f"{escape(n)}: {d['data']['thinned']['kept']} of {d['data']['thinned']['of']} steps"
               for n, d in payload.items() if "thinned" in d["data"]]
    parts += [
        "<h2 id=\"data\">Data</h2><p class=\"muted\">The numbers behind this page are embedded as JSON in the "
        "<code>script#graddoctor-data</code> element of this file"
        + (f" (long runs thinned to every k-th step, the figures use them all: {'; '.join(thinned)})"
           if thinned else "") + ".</p>",
        '<script type="application/json" id="graddoctor-data">' + _json_for_html(payload) + "</script>",
        "</body></html>",
    ]
    return "\n".join(parts)


def write(path: str | Path, reports: Report | Sequence[Report] | Mapping[str, Report],
          title: str = "graddoctor report", figures: bool = True) -> Path:
    """Write :func:`render` to ``path`` (parent folders created) and return the path.

    Example:
        >>> write("runs/exp1/report.html", w.report())  # doctest: +SKIP
    """
    path, page = Path(path), render(reports, title, figures)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as e:  # read-only, /proc, a file where a folder should be: one line
        raise InputError(f"cannot write the report to {path}: {e.strerror or e} - choose a writable path") from e
    return path


def _sections(reports: Report | Sequence[Report] | Mapping[str, Report]) -> dict[str, Report]:
    if isinstance(reports, Report):
        reports = [reports]
    if isinstance(reports, Mapping):
        return dict(reports)
    out: dict[str, Report] = {}
    for r in reports:
        name = r.source or "report"
        n = 2
        while name in out:
            name = f"{r.source or 'report'} ({n})"
            n += 1
        out[name] = r
    return out


def _verdict(name: str, r: Report) -> str:
    if r.source == "repair" and not r.findings:
        return f"{escape(name)}: {len(r.data.get('changes') or [])} change(s)"
    cls, word = ("ok", "OK") if r.ok else ("bad", "PROBLEMS")
    return f'{escape(name)}: <span class="{cls}">{word}</span>'


def _findings_table(sections: Mapping[str, Report]) -> str:
    rows = [(name, f) for name, r in sections.items() for f in r.findings]
    if not rows:
        return '<p class="ok">No findings.</p>'
    head = "".join(f"<th>{h}</th>" for h in
                   ("report", "severity", "finding", "step", "layers", "evidence", "what to do", "reference"))
    body = "".join(_finding_row(name, f) for name, f in rows)
    return f'<table id="findings-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _finding_row(section: str, f: Finding) -> str:
    evidence = "<br>".join(f"{escape(str(k))}={escape(_value(v))}" for k, v in f.evidence.items())
    return (
        f'<tr data-code="{escape(f.code)}"><td>{escape(section)}</td>'
        f'<td><span class="sev {escape(f.severity)}">{escape(f.severity)}</span></td>'
        f"<td><code class=\"code\">{escape(f.code)}</code><br>{escape(f.message)}</td>"
        f"<td>{'' if f.step is None else int(f.step)}</td>"
        f"<td>{_layers(f.layers)}</td><td>{evidence}</td>"
        f"<td>{escape(', '.join(f.remedies))}</td><td>{escape(f.reference)}</td></tr>"
    )


def _layers(names: Sequence[str], keep: int = 4) -> str:
    shown = [escape(n or "<model>") for n in names]
    if len(shown) <= keep:
        return ", ".join(f"<code>{n}</code>" for n in shown)
    head = ", ".join(f"<code>{n}</code>" for n in shown[:keep])
    return (f"{head}<details><summary>all {len(shown)}</summary>"
            + ", ".join(f"<code>{n}</code>" for n in shown) + "</details>")


def _changes_table(changes: Sequence[Any]) -> str:
    rows = []
    for c in changes:
        c = c if isinstance(c, dict) else {"why": str(c)}
        details = c.get("details") or {}
        rows.append(
            f"<tr><td><code>{escape(str(c.get('remedy', '')))}</code></td><td>{escape(str(c.get('kind', '')))}</td>"
            f"<td>{_layers([str(m) for m in c.get('modules', [])])}</td><td>{escape(str(c.get('why', '')))}</td>"
            "<td>" + "<br>".join(f"{escape(str(k))}={escape(_value(v))}" for k, v in details.items()) + "</td></tr>"
        )
    return ("<h3>Changes</h3><table class=\"changes\"><thead><tr><th>remedy</th><th>kind</th><th>modules</th>"
            "<th>why</th><th>details</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _timeline_table(events: Sequence[dict]) -> str:
    """The run's events (autofix rounds) in step order: step, the findings that caused each,
    the remedies applied, the modules changed and the one-line message."""
    rows = []
    for e in events:
        found = [f for f in e.get("findings") or [] if isinstance(f, dict)]
        causes = "<br>".join(f"<code>{escape(str(f.get('code', '')))}</code> {escape(str(f.get('message', '')))}"
                             for f in found) or ", ".join(f"<code>{escape(str(c))}</code>" for c in e.get("codes") or [])
        remedies = ", ".join(f"<code>{escape(str(r))}</code>" for r in e.get("remedies") or [])
        rows.append(f'<tr data-step="{int(e["step"])}" data-kind="{escape(str(e.get("kind", "")))}">'
                    f"<td>{int(e['step'])}</td><td>{escape(str(e.get('kind', '')))}</td><td>{causes}</td>"
                    f"<td>{remedies}</td><td>{_layers([str(m) for m in e.get('modules') or []])}</td>"
                    f"<td>{escape(event_line(e))}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("step", "event", "because of", "remedies", "modules", "what happened"))
    return (f"<h3>{events_title(list(events))} timeline</h3><table class=\"timeline\"><thead><tr>{head}</tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _figures(report: Report) -> list[str]:
    from graddoctor.present import plots as plots

    out = []
    for name, fig in plots.figures(report).items():
        png = base64.b64encode(plots.to_png(fig)).decode("ascii")
        caption = (plots.WATCH_FIGURES.get(name) or plots.probe_profile).__doc__.splitlines()[0].replace("``", "")
        out.append(f'<figure data-figure="{escape(name)}"><img alt="{escape(name)}" '
                   f'src="data:image/png;base64,{png}"><figcaption>{escape(caption)}</figcaption></figure>')
    return out


def _value(v: Any, keep: int = 6) -> str:
    """An evidence/detail value for a table cell: long dicts and lists cut short."""
    if isinstance(v, dict) and len(v) > keep:
        head = ", ".join(f"{k}: {format_value(x)}" for k, x in list(v.items())[:3])
        return "{" + head + f", ... ({len(v)} entries)}}"
    return format_value(v)


def _thin(d: dict[str, Any], max_steps: int = MAX_STEPS) -> dict[str, Any]:
    """A report dict with at most ``max_steps`` step records (every k-th, and the last) in its data."""
    steps = d.get("data", {}).get("steps")
    if not isinstance(steps, list) or len(steps) <= max_steps:
        return d
    k = -(-len(steps) // max_steps)
    kept = steps[::k] if (len(steps) - 1) % k == 0 else [*steps[::k], steps[-1]]
    thinned = {"kept": len(kept), "of": len(steps), "every": k}
    return {**d, "data": {**d["data"], "steps": kept, "thinned": thinned}}


def _json_for_html(obj: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' survive unescaped."""
    text = json.dumps(obj, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
