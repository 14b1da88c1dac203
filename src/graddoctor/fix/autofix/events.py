"""An autofix round as an event record: what ``w.fixes`` holds and the run log writes.

Example:
    >>> from graddoctor.fix.remedies.base import Change
    >>> from graddoctor.report import Finding
    >>> e = fix_event(40, [Finding("dead-relu", "warning", "d")], [Change("leaky-relu", ["1"], "w", "applied")],
    ...               {"added": 0, "dropped": 0, "reset": 0}, False)
    >>> e["message"]
    'step 40: dead-relu -> leaky-relu on 1 modules (1)'
"""

from __future__ import annotations

from typing import Any

from graddoctor.fix.autofix.collapse import COLLAPSED
from graddoctor.report import Finding, format_names


def family(remedy: str) -> str:
    """The registry family of a remedy id (``rollback``: optimizer; unknown: "")."""
    from graddoctor.fix import remedies as registry

    entry = registry.REMEDIES.get(remedy)
    return entry.family if entry is not None else "optimizer" if remedy == "rollback" else ""


def fix_event(step: int, causes: list[Finding], applied: list, counts: dict, blowup: bool,
              **extra: Any) -> dict:
    """The event of one round: the causes' codes, the remedies applied, the modules touched (all,
    a rollback's too), the optimizer's rebinding counts and a one-line message (naming the modules
    of the module-level remedies only: "rollback, warmup, lower-lr" reads as no module change).

    Example:
        >>> from graddoctor.fix.remedies.base import Change
        >>> e = fix_event(50, [Finding("post-ln-no-warmup", "error", "p")], [Change("rollback", ["a", "b"], "r"),
        ...               Change("warmup", ["a"], "w"), Change("lower-lr", [], "l")], {}, False)
        >>> e["message"], e["modules"]
        ('step 50: post-ln-no-warmup -> rollback, warmup, lower-lr; weights rolled back', ['a', 'b'])
    """
    codes = sorted({f.code for f in causes})
    modules = sorted({m for c in applied for m in c.modules})
    what = ", ".join(c.remedy for c in applied) or (
        f"nothing new in place (its in-place remedies were applied at step {extra['repeat_of']})"
        if "repeat_of" in extra else "nothing applicable in place")
    remedies = {c.remedy for c in applied}
    kept = {"forget-bias": "; gate biases set, weights kept", "norm-gain": "; zero norm gains set to 1, weights kept"}
    tail = ("; weights re-initialised" if any(family(r) == "init" and r not in kept for r in remedies)
            else "; weights rolled back" if "rollback" in remedies
            else next((kept[r] for r in kept if r in remedies), ""))
    # the modules a module-level remedy touched (a rollback restores every weight: its tail says so)
    named = sorted({m for c in applied if family(c.remedy) not in ("optimizer", "schedule", "clip", "advice")
                    for m in c.modules})
    line = (f"step {step}: {', '.join(codes)} -> {what}"
            + (f" on {len(named)} modules ({format_names(named)})" if named else "") + tail)
    if counts.get("added") or counts.get("dropped"):  # an EMA/SWA copy zips the old parameter list
        line += (f"; parameters changed ({counts.get('added', 0)} added, {counts.get('dropped', 0)} dropped): "
                 "rebuild anything holding the old list (an EMA/SWA AveragedModel, another optimizer)")
    if extra.get("manual"):  # what autofix cannot do in place: a functional activation call
        more = len(extra["manual"]) - 2  # every one is in the event's "manual"
        line += ("; needs a code change: " + "; ".join(extra["manual"][:2])
                 + (f"; ... (+{more} more: the event's 'manual')" if more > 0 else ""))
    if "not_collapsed" in extra:  # collapse.CollapseGate held a post-LN restart back
        line = (f"step {step}: {', '.join(codes)} -> no restart: the tokens never collapsed onto one vector "
                f"(smallest spread {extra['not_collapsed']:.2f}, a restart needs < {COLLAPSED}), so this reads as a "
                "slow start on a plateau it may leave; if it stays, add a learning-rate warm-up (or pre-LN blocks)")
    if extra.get("gave_up"):  # the last round's window still fails
        line = (f"step {step}: {', '.join(codes)} still there after {extra['gave_up']} rounds (max_fixes): "
                "autofix stops; training goes on as it is")
    return {"step": step, "codes": codes, "remedies": [c.remedy for c in applied], "modules": modules,
            "optimizer": counts, "message": line, "blowup": blowup,
            "changes": [c.to_dict() for c in applied], **extra}


def manual_steps(changes: list) -> list[str]:
    """The code changes a round's remedies left to the user (``kind == "manual"``): one line each,
    e.g. "in Block.forward (module 'blocks.0'): replace the sigmoid call by F.relu(x) ...".

    Example:
        >>> from graddoctor.fix.remedies.base import Change
        >>> manual_steps([Change("relu", [], "w", "manual", {"manual": [{"code": "in f: use F.relu(x)"}]})])
        ['in f: use F.relu(x)']
    """
    out: list[str] = []
    for c in changes:
        if c.kind != "manual":
            continue
        codes = [m["code"] for m in c.details.get("manual", []) if isinstance(m, dict) and m.get("code")]
        out += codes or [f"{c.remedy}: {c.details.get('code') or c.why}"]
    return list(dict.fromkeys(out))


__all__ = ["family", "fix_event", "manual_steps"]
