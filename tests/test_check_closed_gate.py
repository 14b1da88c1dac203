"""An LSTM whose forget gate starts closed over a long sequence is a vanishing-gradient warning at
check time (it was "no findings": gated recurrences are exempt from the time profile), and repair
opens the gate (forget-bias, the weights kept); PyTorch's default LSTM and GRU get nothing."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


class Classifier(nn.Module):
    def __init__(self, cell: type = nn.LSTM, hidden: int = 32) -> None:
        super().__init__()
        self.rnn, self.head = cell(4, hidden, batch_first=True), nn.Linear(hidden, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def closed(model: Classifier, bias: float = -10.0) -> Classifier:
    h = model.rnn.hidden_size
    with torch.no_grad():  # torch's LSTM gate order: input, forget, cell, output
        model.rnn.bias_ih_l0[h:2 * h].fill_(bias / 2)
        model.rnn.bias_hh_l0[h:2 * h].fill_(bias / 2)
    return model


def test_a_closed_forget_gate_is_a_warning_and_repair_opens_it():
    torch.manual_seed(0)
    model, x, y = closed(Classifier()), torch.randn(8, 200, 4), torch.randint(0, 5, (8,))
    report = gd.check(model, x, target=y)
    [f] = [f for f in report.findings if f.code == "vanishing-gradient"]
    assert f.severity == "warning" and f.layers == ["rnn"] and f.evidence["gate_bias"] == -10.0
    result = gd.repair(model, report, example_inputs=x)
    assert [c.remedy for c in result.changes if c.kind == "applied"] == ["forget-bias"]
    h = result.model.rnn.hidden_size
    assert float((result.model.rnn.bias_ih_l0 + result.model.rnn.bias_hh_l0)[h:2 * h].mean().detach()) > 0


def test_default_lstm_and_gru_get_nothing_on_long_sequences():
    torch.manual_seed(0)
    x, y = torch.randn(8, 300, 4), torch.randint(0, 5, (8,))
    for cell in (nn.LSTM, nn.GRU):
        report = gd.check(Classifier(cell), x, target=y)
        assert not [f for f in report.findings if f.severity != "info"], report.findings
