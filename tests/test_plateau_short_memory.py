"""watch: a plateau with no gradient-flow cause in an LSTM whose keep gates remember ~2 steps of a
50-step sequence names that memory and ``forget-bias`` (it used to blame only the data); in a run
that steps several optimizers (a GAN's generator loss) it is info.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.training.policy import apply_policy
from graddoctor.report import Finding


def test_policy_names_the_short_memory() -> None:
    plateau = Finding("loss-plateau", "warning", "flat", [], {"short_memory_layers": ["rnn"], "memory_steps": 2.0,
                                                             "seq_len": 50})
    out = apply_policy([plateau], [])[0]
    assert out.remedies[0] == "forget-bias" and "memory of ~2 steps on sequences of 50" in out.message
    plain = apply_policy([Finding("loss-plateau", "warning", "flat", [], {})], [])[0]
    assert "forget-bias" not in plain.remedies and "keep gates" not in plain.message


def test_a_cause_less_plateau_of_several_optimizers_is_info() -> None:
    gan = apply_policy([Finding("loss-plateau", "warning", "flat", [], {"several_optimizers": True})], [])[0]
    assert gan.severity == "info" and "several optimizers" in gan.message
    one = apply_policy([Finding("loss-plateau", "warning", "flat", [], {})], [])[0]
    assert one.severity == "warning"
    caused = apply_policy([Finding("loss-plateau", "warning", "flat", [], {"several_optimizers": True,
                                                                         "gradient_evidence": "saturated"})], [])[0]
    assert caused.severity == "error"  # a gradient-flow cause is a fault in any run


class _Recall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn, self.head = nn.LSTM(4, 32, batch_first=True), nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_lstm_stuck_on_a_long_recall_gets_the_gate_hint() -> None:
    torch.manual_seed(0)
    seq = torch.randint(0, 4, (2048, 50))
    x, y = F.one_hot(seq, 4).float(), seq[:, 0]  # recall the first of 50 tokens
    net = _Recall()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with gd.watch(net, opt) as w:
        for i in range(120):
            idx = torch.arange(i * 64, (i + 1) * 64) % 2048
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            w.step(loss)
    plateau = next(f for f in w.report().findings if f.code == "loss-plateau")
    assert "forget-bias" in plateau.remedies and "'rnn'" in plateau.message
