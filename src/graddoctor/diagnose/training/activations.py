"""Activation rules: dead-relu and saturated-activation, from watch's sampled statistics.

- dead-relu reads ``dead_frac``: the fraction of a ReLU site's units that never
  fired over watch's window. A healthy ReLU layer outputs ~50% zeros per sample
  (``zero_frac``) but almost no unit is silent for a whole window, so the natural
  zeros never count. Only ``relu``/``relu6`` die: leaky ReLU, ELU, GELU and SiLU
  pass a gradient on the negative side (``graddoctor.kinds.DYING``).
- saturated-activation reads ``sat_frac`` (``graddoctor.kinds.saturated_mask``:
  |tanh| > 0.99, sigmoid outside [0.01, 0.99]) at sigmoid/tanh-family sites, from
  ``SAT_FRAC`` (``graddoctor.diagnose.thresholds``) on. Output sites (a final sigmoid) and
  gates (LSTM/GRU gates, GLU, squeeze-excitation) are meant to sit near 0/1 and
  are never read.

Example:
    >>> meta = {"activations": [{"name": "1", "kind": "relu", "family": "relu", "is_output": False}]}
    >>> steps = [{"step": t, "act": {"1": {"dead_frac": 0.8, "zero_frac": 0.9}}} for t in (0, 10)]
    >>> [(f.code, f.layers) for f in dead_relu(meta, steps)]
    [('dead-relu', ['1'])]
"""

from __future__ import annotations

import math

from graddoctor.diagnose.thresholds import SAT_FRAC
from graddoctor.diagnose.training.series import as_float, first_persistent, sampled, used_steps
from graddoctor.diagnose.training.sites import dying_sites, saturating_hidden_sites, site_layer
from graddoctor.report import Finding

#: a site is dead when at least half its units never fire over a window (Lu et al.
#: 2019 call a network "born dead" when a layer is entirely silent; half is the
#: point where the layer has lost most of its width)
DEAD_FRAC = 0.5
DEAD_ERROR_FRAC = 0.9
#: a site whose outputs are zero on this fraction of its elements on every sample from some step
#: to the last (more than ``PERSIST`` of them) is dead too (a healthy ReLU site is ~50% zeros): a
#: 3-layer ReLU MLP killed at step 29 by SGD 0.5 read zero_frac 1.00 from step 64 and dead_frac
#: 0.11, its window reaching back to step 1
ALL_ZERO = 0.99
#: consecutive sampled steps the statistic must hold
PERSIST = 2

REF_DEAD = (
    "Lu, Shin, Su & Karniadakis 2019 (Dying ReLU and initialization, sec. 3); "
    "Maas, Hannun & Ng 2013 (rectifier nonlinearities, sec. 3)"
)
REF_SAT = (
    "Glorot & Bengio 2010 (AISTATS, sec. 3.1: saturation); LeCun, Bottou, Orr & Mueller 1998 "
    "(Efficient BackProp, sec. 4.4)"
)

def _scan(meta: dict, steps: list[dict], sites: list[dict], key: str, thr: float):
    """{site name: (first step, values at and after it)} for sites over ``thr`` PERSIST times."""
    st = sampled(used_steps(steps), "act")
    hits = {}
    for site in sites:
        vals = [as_float(((s.get("act") or {}).get(site["name"]) or {}).get(key)) for s in st]
        idx = [i for i, v in enumerate(vals) if not math.isnan(v)]
        flags = [vals[i] >= thr for i in idx]
        j = first_persistent(flags, PERSIST)
        if j is not None:
            rows = [vals[i] for i in idx[j:]]
            hits[site["name"]] = (int(st[idx[j]].get("step", idx[j])), rows)
    return hits


def _finding(code, sev, msg, sites, hits, key, thr, remedies, ref) -> Finding:
    by_name = {s["name"]: s for s in sites}
    names = sorted(hits, key=lambda n: hits[n][0])
    ev = {f"{key}[{n}]": round(max(hits[n][1][:PERSIST]), 3) for n in names}
    ev.update({"threshold": thr, "sites": len(names), "sites_watched": len(sites),
               "max_" + key: round(max(max(v[1][:PERSIST]) for v in hits.values()), 3),
               "min_" + key: round(min(max(v[1][:PERSIST]) for v in hits.values()), 3)})
    layers = list(dict.fromkeys(site_layer(by_name[n]) for n in names))
    return Finding(code, sev, msg, layers, ev, remedies, min(h[0] for h in hits.values()), ref)


def dead_relu(meta: dict, steps: list[dict]) -> list[Finding]:
    """ReLU sites with >= ``DEAD_FRAC`` of their units silent over a window (output sites excepted).

    Example:
        >>> dead_relu({"activations": []}, [])
        []
    """
    sites = dying_sites(meta)
    hits = _scan(meta, steps, sites, "dead_frac", DEAD_FRAC)
    # a site all zeros on every sampled batch from some step to the end is dead whatever dead_frac
    # says: its window of 10 samples reaches back to before the units died in a short run
    zeros = {n: h for n, h in _scan(meta, steps, sites, "zero_frac", ALL_ZERO).items()
             if n not in hits and len(h[1]) > PERSIST and min(h[1]) >= ALL_ZERO}
    if not hits and not zeros:
        return []
    worst = max(max(v[1][:PERSIST]) for v in (hits or zeros).values())
    msg = (f"{len(hits)} ReLU site(s) with {worst:.0%} of units never active over watch's window "
           f"(threshold {DEAD_FRAC:.0%}; a healthy ReLU layer is ~50% zeros per sample but has "
           "few units silent on every sample)") if hits else ""
    if zeros:
        first = min(h[0] for h in zeros.values())
        msg += (("; " if msg else "") + f"{len(zeros)} ReLU site(s) output only zeros on every sampled batch "
                f"from step {first} to the end: every unit died there")
        hits.update({n: (h[0], [1.0] * len(h[1])) for n, h in zeros.items()})  # every unit silent
        worst = 1.0
    sev = "error" if worst >= DEAD_ERROR_FRAC else "warning"
    return [_finding("dead-relu", sev, msg, sites, hits, "dead_frac", DEAD_FRAC,
                     ["leaky-relu", "he-init", "lower-lr"], REF_DEAD)]


def saturated_activation(meta: dict, steps: list[dict]) -> list[Finding]:
    """Sigmoid/tanh sites with >= ``SAT_FRAC`` of outputs at the bounds (outputs, gates excepted).

    Example:
        >>> saturated_activation({"activations": []}, [])
        []
    """
    sites = saturating_hidden_sites(meta)
    hits = _scan(meta, steps, sites, "sat_frac", SAT_FRAC)
    if not hits:
        return []
    worst = max(max(v[1][:PERSIST]) for v in hits.values())
    msg = (f"{len(hits)} sigmoid/tanh site(s) with {worst:.0%} of outputs pinned at their bounds "
           f"(threshold {SAT_FRAC:.0%}): their local gradient is ~0")
    return [_finding("saturated-activation", "warning", msg, sites, hits, "sat_frac", SAT_FRAC,
                     ["batchnorm", "xavier-init", "relu"], REF_SAT)]
