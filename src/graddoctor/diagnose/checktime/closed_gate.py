"""``vanishing-gradient`` at check time from an LSTM/GRU keep gate that starts closed.

The probe's time profile exempts gated recurrences (their gates open as training needs it), so a
keep gate drawn shut read "no findings": an LSTM whose forget-gate bias sums to -10 over 500
steps passed 2.8e-11 of the gradient 10 steps back (held-out trial, 2026-12-02). Watch has the
rule (``diagnose.training.forget_gate``); this is its check-time half, on the same line: a mean
keep-gate bias <= ``CLOSED_BIAS`` (-2) over a sequence along which the state path loses >= 3
orders (``sites.closed_gates``). A warning: training may still open the gate, but the gradient
that would open it is the one the gate drops. The fix is ``forget-bias`` (the weights kept).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from graddoctor.modelmap import ModelMap
    >>> lstm = nn.LSTM(4, 8, batch_first=True)
    >>> _ = torch.nn.init.constant_(lstm.bias_ih_l0, -5.0)
    >>> m = ModelMap(lstm, torch.randn(2, 50, 4))
    >>> [(f.code, f.severity, f.layers) for f in closed_gate_at_init(lstm, m)]
    [('vanishing-gradient', 'warning', [''])]
"""

from __future__ import annotations

from torch import nn

from graddoctor.diagnose.training.forget_gate import REF, REMEDIES
from graddoctor.diagnose.training.sites import closed_gates, state_path_orders
from graddoctor.measure.monitor.gates import gate_memory
from graddoctor.modelmap import ModelMap
from graddoctor.report import Finding


def closed_gate_at_init(model: nn.Module, m: ModelMap) -> list[Finding]:
    """One warning naming the LSTM/GRU layers whose keep gate starts closed over the traced sequence."""
    mods = dict(model.named_modules())
    layers = [{"name": x.name, "gate_memory": gm} for x in m.layers
              if isinstance(mods.get(x.name), (nn.LSTM, nn.GRU)) and any(p.requires_grad for p in mods[x.name].parameters())
              and (gm := gate_memory(mods[x.name], x)) is not None]
    closed = closed_gates({"layers": layers})
    if not closed:
        return []
    name, gm = min(closed, key=lambda c: c[1]["bias"])
    t = gm.get("seq_len")
    lost = f", so the state path loses {state_path_orders(gm['bias'], t):.0f} orders over the {t} steps" if t else ""
    return [Finding(
        "vanishing-gradient", "warning",
        f"the {gm['gate']} gate of {len(closed)} recurrent layer(s) starts closed (mean bias {gm['bias']:.2g}: "
        f"a memory of ~{gm['memory_steps']:.1f} steps){lost}: the gradient from further back barely reaches "
        "them - start the gate open (forget-bias)",
        layers=[n for n, _ in closed], step=0, remedies=list(REMEDIES), reference=REF,
        evidence={"gate": gm["gate"], "gate_bias": gm["bias"], "memory_steps": gm["memory_steps"], "seq_len": t})]


__all__ = ["closed_gate_at_init"]
