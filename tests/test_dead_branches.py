"""Dead branches (diagnose/training/dead_branches.py): weight layers that get exactly zero gradient
while the skips carry the rest of the net. A Llama with zeroed RMSNorm gains was called
``exploding-gradient`` by watch (the zeros, floored at 1e-30, read as 24 orders of growth toward
the input); the right code is ``vanishing-gradient`` naming the dead layers, with ``norm-gain``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from graddoctor import data
from graddoctor.diagnose.training import training_findings
from graddoctor.diagnose.training.dead_branches import DEAD_BRANCH_ROWS as ROWS
from graddoctor.diagnose.training.dead_branches import dead_branches
from graddoctor.diagnose.training.gradients import exploding_gradient
from test_rules import _train


class GatedBlock(nn.Module):
    """Pre-norm residual block with a SwiGLU MLP, no biases (Llama's): x + down(silu(gate(n(x))) * up(n(x)))."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d, bias=False)
        self.gate, self.up = nn.Linear(d, 2 * d, bias=False), nn.Linear(d, 2 * d, bias=False)
        self.down = nn.Linear(2 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def _net(zero_gains: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(64, 32), *[GatedBlock(32) for _ in range(3)], nn.Linear(32, 10))
    if zero_gains:
        for m in net.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.zeros_(m.weight)
    return net


def _fit(net: nn.Module, steps: int = 40) -> tuple[dict, list[dict], list[float]]:
    """``test_rules._train``'s loop (Adam 1e-3, batches of 32 digits in order) with the losses."""
    torch.set_num_threads(1)
    b = data.load("digits", seed=0)
    meta, records = _train(net, b.x_train.float(), b.y_train, torch.optim.Adam(net.parameters(), lr=1e-3), steps)
    return meta, records, [s["loss"] for s in records]


def test_zeroed_gains_are_a_dead_branch_not_an_explosion():
    meta, steps, losses = _fit(_net(zero_gains=True))
    assert losses[-1] < losses[0]  # the skips still learn: the input and output sides both live
    found = {f.code: f for f in training_findings(meta, steps)}
    assert "exploding-gradient" not in found and not exploding_gradient(meta, steps)
    f = found["vanishing-gradient"]
    assert f.remedies[0] == "norm-gain" and len(f.evidence["zeroed_norm_gains"]) == 3
    assert sorted(f.evidence["dead_layers"]) == sorted(f"{i}.{p}" for i in (1, 2, 3) for p in ("gate", "up", "down"))
    assert "exactly zero gradient" in f.message


def test_the_same_net_with_its_gains_learns_clean():
    meta, steps, _ = _fit(_net(zero_gains=False))
    assert not dead_branches(meta, steps)
    assert not {"vanishing-gradient", "exploding-gradient"} & {f.code for f in training_findings(meta, steps)}


def _records(zero_rows: int, dead: int, n: int = 9) -> tuple[dict, list[dict]]:
    meta = {"layers": [{"name": f"l{i}", "kind": "linear", "trainable": True} for i in range(n)]}
    steps = [{"step": t, "grad_norm": {f"l{i}": 0.0 if (t <= zero_rows and i % 2 and i // 2 < dead) else 0.1
                                       for i in range(n)}} for t in range(1, 40)]
    return meta, steps


def test_the_rule_needs_its_rows_and_its_share_of_layers():
    assert dead_branches(*_records(ROWS, 4))  # 4 of 9 layers, ROWS steps
    assert not dead_branches(*_records(ROWS - 1, 4))  # a start-up cut (ReZero's first step), a block
    # dropped by stochastic depth several steps in a row
    assert not dead_branches(*_records(39, 2))  # two idle layers are no cut through the net
    meta, steps = _records(39, 4)
    for s in steps:
        s["grad_norm"] = {k: 0.0 for k in s["grad_norm"]}
    assert not dead_branches(meta, steps)  # nothing alive at all: not a branch (dead_body's case)


def test_unused_layers_have_no_gradient_and_are_not_dead():
    class WithSpare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = _net(zero_gains=False)
            self.spare = nn.Sequential(*[nn.Linear(32, 32) for _ in range(6)])  # never called

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

    meta, steps, _ = _fit(WithSpare(), steps=30)
    assert not dead_branches(meta, steps)
