"""Findings about a frozen part only (a pretrained backbone under a trainable head) are info.

A gradient that vanishes through layers that do not train holds no training back, and their
init scale or activation is the user's to keep: a frozen 15-layer sigmoid backbone under a head
read as a ``vanishing-gradient`` error, and ``repair`` rewrote the backbone (held-out trial,
2026-12-02). A finding keeps its severity when any layer it names trains.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> from graddoctor.report import Finding
    >>> net = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    >>> _ = net[0].requires_grad_(False)
    >>> f = Finding("poor-init", "warning", "off scale", layers=["0"])
    >>> [g.severity for g in frozen_part_info([f], net, ModelMap(net, torch.randn(2, 4)))]
    ['info']
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from graddoctor.modelmap import ModelMap, modules_by_name
from graddoctor.report import Finding

#: the codes about the layers they name (a frozen layer's share of them holds nothing back)
#: (not signal-collapse/-explosion: a frozen part's collapsed forward signal still feeds the trainable head)
CODES = frozenset({"vanishing-gradient", "exploding-gradient", "poor-init", "saturating-hidden-activation",
                   "deep-without-skip", "no-gradient"})


def frozen_names(model: nn.Module, m: ModelMap) -> set[str]:
    """The modules whose parameters are all frozen (weight layers and containers), and the activation
    sites fed by frozen layers only."""
    mods = modules_by_name(model)
    frozen: set[str] = set()
    feeds: dict[str, list[bool]] = {}
    for x in m.layers:
        ps = list(mods[x.name].parameters(recurse=False)) if x.name in mods else []
        if not ps:
            continue
        still = not any(p.requires_grad for p in ps)
        if still:
            frozen.add(x.name)
        if x.activation_site:
            feeds.setdefault(x.activation_site, []).append(still)
    # modules whose parameters are all frozen, containers too (a frozen BERT's attention blocks)
    held = {n for n, mod in mods.items() if (ps := list(mod.parameters())) and not any(p.requires_grad for p in ps)}
    return frozen | held | {s for s, fr in feeds.items() if all(fr)}


def frozen_part_info(findings: list[Finding], model: nn.Module, m: ModelMap) -> list[Finding]:
    """``findings`` with those of ``CODES`` that name frozen layers only made info (see module doc)."""
    if all(p.requires_grad for p in model.parameters()) or not any(p.requires_grad for p in model.parameters()):
        return findings  # nothing frozen, or all of it (check warns about that case on its own)
    frozen = frozen_names(model, m)
    return [replace(f, severity="info", message=f"{f.message} - only in frozen layers (requires_grad=False), "
                    "which do not train: nothing to fix unless you unfreeze them")
            if f.code in CODES and f.severity != "info" and f.layers and set(f.layers) <= frozen else f
            for f in findings]


__all__ = ["CODES", "frozen_names", "frozen_part_info"]
