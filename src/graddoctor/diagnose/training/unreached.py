"""no-gradient: trainable layers the loss never reaches.

A layer whose parameters require a gradient but get none on any recorded step (its
``grad_norm`` null while other layers have one) does not train: the forward detaches it
(``.detach()``, ``torch.no_grad()``, ``.data``), or does not use it. The profile rules leave
such layers out as frozen, so without this rule a detached branch goes unseen (a new-user
trial: a CNN whose feature branch was detached trained to 2.1 loss in 150 steps, and watch
said "no findings"). ``MIN_STEPS`` steps with gradients are needed. A warning, not an error:
a layer the model holds for another loss (an auxiliary head) is legitimate; the message says
how to mark it (``requires_grad_(False)``). Layers whose parameters the mapped forward never
reads (meta ``unread``: ESM's ``contact_head`` under a masked-LM or classification loss, XLNet's
``mask_emb`` without ``target_mapping``) are unused in this configuration, not cut off: stock
models carry such heads, so they get an **info** (a layer the user forgot to call is still named).

Example:
    >>> meta = {"layers": [{"name": "a", "kind": "linear"}, {"name": "b", "kind": "linear"}]}
    >>> steps = [{"step": t, "grad_norm": {"a": None, "b": 0.5}} for t in range(1, 21)]
    >>> f = no_gradient(meta, steps)[0]; f.code, f.layers
    ('no-gradient', ['a'])
"""

from __future__ import annotations

import numpy as np

from graddoctor.diagnose.training.series import matrix, used_steps
from graddoctor.report import Finding

#: fewest recorded steps with gradients before a layer can be said never to get one
MIN_STEPS = 10

REF = "Paszke et al. 2019 (NeurIPS, PyTorch: autograd records only operations on tensors that require grad)"


def no_gradient(meta: dict, steps: list[dict]) -> list[Finding]:
    """Trainable layers with no gradient on every step that recorded gradients, or []: a warning
    for those the mapped forward reads (cut off), an info for those it never reads (unused)."""
    names = [ly["name"] for ly in meta.get("layers", []) if ly.get("trainable", True)]
    st = [s for s in used_steps(steps) if isinstance(s.get("grad_norm"), dict)]
    if len(st) < MIN_STEPS or not names:
        return []
    unreached = np.isnan(matrix(st, "grad_norm", names)).all(axis=0)  # null (or NaN) on every step
    never = [n for n, u in zip(names, unreached) if u]
    if not never or len(never) == len(names):  # no layer has a gradient: no backward recorded
        return []
    kinds = {ly["name"]: ly.get("kind") for ly in meta.get("layers", [])}
    unread = {ly["name"] for ly in meta.get("layers", []) if ly.get("unread")}
    cut, unused = [n for n in never if n not in unread], [n for n in never if n in unread]
    ev = {"layers_without_gradient": len(never), "trainable_layers": len(names), "steps": len(st),
          "unused_by_forward": len(unused)}
    out = []
    if cut:
        msg = (f"{len(cut)} trainable layer(s) never got a gradient in {len(st)} steps ({_shown(cut, kinds)}): "
               "the loss does not reach them - a .detach() or torch.no_grad() in the forward, or a layer "
               "the forward does not use; they will not train (if that is intended, call "
               "requires_grad_(False) on them)")
        out.append(Finding("no-gradient", "warning", msg, cut, ev, [], int(st[0].get("step", 0)), REF))
    if unused:
        msg = (f"{len(unused)} trainable layer(s) the forward never used ({_shown(unused, kinds)}) got no "
               f"gradient in {len(st)} steps: a head or embedding for another task or input, which is "
               "fine; if they should train, the forward must call them (requires_grad_(False) silences this)")
        out.append(Finding("no-gradient", "info", msg, unused, ev, [], int(st[0].get("step", 0)), REF))
    return out


def _shown(names: list[str], kinds: dict) -> str:
    label = [_label(n, kinds.get(n)) for n in names]
    return ", ".join(label[:4]) + (f", ... (+{len(names) - 4})" if len(names) > 4 else "")


def _label(name: str, kind: str | None) -> str:
    """How a layer reads in the message: a module that only holds parameters of its own (kind
    "other": XLNet's ``mask_emb``, a bare ``nn.Parameter`` on the model) is named as such.

    Example:
        >>> _label("transformer", "other"), _label("", "other"), _label("fc", "linear")
        ("transformer's own parameters", "the model's own parameters", 'fc')
    """
    if kind != "other":
        return name or "the model"
    return f"{name}'s own parameters" if name else "the model's own parameters"


__all__ = ["MIN_STEPS", "no_gradient"]
