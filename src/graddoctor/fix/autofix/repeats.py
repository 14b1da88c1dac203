"""Repeated rounds: a plan autofix has in effect already applied.

A round whose every remedy either came out as a code change before (a functional
``torch.sigmoid`` call stays one) or re-draws weights an earlier round already re-drew puts the
net back where that round left it; autofix reports it once ("nothing new in place") with the
code changes instead of applying it again.
"""

from __future__ import annotations

from graddoctor.fix.planner import PlanStep
from graddoctor.fix.remedies.init import SCHEMES

_REDRAWS = (*SCHEMES, "edge-of-chaos-init")


def stale(steps: list[PlanStep], redrawn: set[str], manual: set[str]) -> bool:
    """Every step of a plan either came out as a code change in an earlier round (``manual``: a
    functional ``torch.sigmoid`` call stays one) or is a re-draw an earlier kept round already made
    (``redrawn``): applying it would put the net back where that round left it, which the run has
    since failed from. A trial: a 15-layer MLP with ``torch.sigmoid`` calls in its forward had all
    16 Linear layers re-drawn with He's scheme at step 10 (poor-init) and again at step 50
    (vanishing-gradient), the sigmoid calls unchanged both times. A blow-up's plan keeps its rate
    cut, so it is never stale.

    Example:
        >>> plan = [PlanStep("relu", "r"), PlanStep("he-init", "h")]
        >>> stale(plan, {"he-init"}, {"relu"}), stale(plan, set(), {"relu"})
        (True, False)
        >>> stale([PlanStep("orthogonal-init", "o"), PlanStep("lower-lr", "l")], {"orthogonal-init"}, set())
        False
    """
    return bool(steps) and all(s.remedy in manual or (s.remedy in _REDRAWS and s.remedy in redrawn)
                               for s in steps)


def drop_stale(steps: list[PlanStep], rounds: list[dict], manual: set[str]) -> tuple[list[PlanStep], dict]:
    """``(steps, {})``, or ``([], event extras)`` when the plan is ``stale`` after the earlier ``rounds``
    (events): ``repeat_of`` (the last round's step) and the ``manual`` code changes they named.

    Example:
        >>> drop_stale([PlanStep("he-init", "h")], [{"step": 10, "remedies": ["he-init"], "manual": ["m"]}], set())
        ([], {'repeat_of': 10, 'manual': ['m']})
    """
    if not stale(steps, {r for e in rounds for r in e["remedies"]}, manual):
        return steps, {}
    return [], {"repeat_of": rounds[-1]["step"],
                "manual": list(dict.fromkeys(m for e in rounds for m in e.get("manual", [])))}


__all__ = ["drop_stale", "stale"]
