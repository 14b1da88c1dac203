"""A body cut off above it mid-run: every LayerNorm gain of a pre-LN Transformer LM zeroed (and
frozen) at step 100, as a bad checkpoint load leaves it. From then on every layer below the final
norm gets exactly zero gradient and the loss sits at ln(V).

Before: no finding (the input and output thirds of the profile both sat at zero, so their drop
said nothing). Now a vanishing-gradient error from the step the body died.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.series import dead_body

V, L = 32, 16


def _batch(s: int):
    g = torch.Generator().manual_seed(s)
    x = (torch.randint(0, V, (32, 1), generator=g) + torch.arange(L)) % V
    return x[:, :-1], x[:, 1:]


class LM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, 32), nn.Parameter(torch.randn(L, 32) * 0.02)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(32), nn.Linear(32, V)

    def forward(self, x):
        return self.head(self.norm(self.enc(self.emb(x) + self.pos[:x.shape[1]])))


def _run(zero_at: int | None, steps: int = 160):
    torch.manual_seed(0)
    m = LM()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    with gd.watch(m, opt, example_inputs=_batch(0)[0]) as w:
        for s in range(steps):
            if s == zero_at:
                with torch.no_grad():
                    for mod in m.modules():
                        if isinstance(mod, nn.LayerNorm):
                            mod.weight.zero_()
                            mod.weight.requires_grad_(False)
            x, y = _batch(s)
            loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    return w.report()


def test_norm_gains_zeroed_mid_run_are_a_vanishing_error_from_that_step():
    report = _run(zero_at=100)
    (f,) = report.by_code("vanishing-gradient")
    assert f.severity == "error" and f.step == 101 and "passes no gradient" in f.message
    assert f.evidence["zero_gradient_layers"] >= 8


def test_the_same_lm_left_alone_gets_no_finding():
    assert _run(zero_at=None).findings == []


def test_a_cut_for_a_step_or_two_is_not_a_dead_body():
    """ReZero's gains cut their branches at the first step only."""
    logs = np.array([[-31.0] * 5 + [-1.0]] * 2 + [[-3.0] * 5 + [-1.0]] * 20)
    assert dead_body(logs, 4) is None
    assert dead_body(np.array([[-31.0] * 6] * 20), 4) is None  # nothing gets a gradient: not this rule
