"""Recurrent models: vanilla tanh RNN, LSTM, GRU, predicting from the last step (or every step)."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.zoo.common import choice, positive, seeded

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


class RecurrentNet(nn.Module):
    """``rnn`` over (B, T, F) batch-first inputs, then ``head`` on the last step (or all steps)."""

    def __init__(self, rnn: nn.RNNBase, head: nn.Linear, task: str, sequence_output: bool) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head
        self.task = task
        self.sequence_output = sequence_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and self.rnn.input_size == 1:  # (B, T) scalar sequences
            x = x.unsqueeze(-1)
        out, _ = self.rnn(x)
        y = self.head(out if self.sequence_output else out[:, -1])
        if self.task == "regression" and y.shape[-1] == 1:
            y = y.squeeze(-1)
        return y


def rnn(cell: str = "rnn", input_size: int = 2, hidden_size: int = 64, num_layers: int = 1,
        output_size: int = 1, task: str = "regression", seed: int = 0,
        sequence_output: bool = False, nonlinearity: str = "tanh") -> RecurrentNet:
    """A recurrent net: ``cell`` in rnn (vanilla tanh), lstm, gru, batch-first (B, T, F) inputs
    ((B, T) is accepted when ``input_size=1``).

    The head is a Linear(hidden, output_size) on the last step's output (or on
    every step with ``sequence_output=True``, for the copy task). For
    ``task="regression"`` with ``output_size=1`` the output is squeezed to (B,)
    (matching the adding problem's targets); classification gives (B, classes) logits.

    Parameter count (g = 1 rnn, 4 lstm, 3 gru; h = hidden, f = input, o = output)::

        g*(h*f + h*h + 2h) + (num_layers-1)*g*(2*h*h + 2h) + h*o + o

    Default (rnn, f=2, h=64, o=1): 4352 + 65 = 4417.

    Example:
        >>> net = rnn("lstm", input_size=2, hidden_size=8)
        >>> net(torch.randn(3, 5, 2)).shape
        torch.Size([3])
    """
    choice("cell", cell, tuple(CELLS))
    choice("task", task, ("regression", "classification"))
    choice("nonlinearity", nonlinearity, ("tanh", "relu"))
    for what, v in (("input_size", input_size), ("hidden_size", hidden_size),
                    ("num_layers", num_layers), ("output_size", output_size)):
        positive(what, v)
    kw = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
    with seeded(seed):
        core = CELLS[cell](input_size, hidden_size, num_layers, batch_first=True, **kw)
        head = nn.Linear(hidden_size, output_size)
    return RecurrentNet(core, head, task, sequence_output)


def rnn_param_count(cell: str = "rnn", input_size: int = 2, hidden_size: int = 64,
                    num_layers: int = 1, output_size: int = 1) -> int:
    """The documented parameter count of :func:`rnn`."""
    g, h = GATES[cell], hidden_size
    count = g * (h * input_size + h * h + 2 * h) + (num_layers - 1) * g * (2 * h * h + 2 * h)
    return count + h * output_size + output_size
