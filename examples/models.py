"""Model factories for the command line: ``graddoctor check examples/models.py:sigmoid_mlp --input-shape 16,64``.

A factory returns a model, or ``(model, example_inputs)``.
"""

from __future__ import annotations

import torch
from torch import nn


def sigmoid_mlp() -> nn.Module:
    """20 Linear layers with sigmoid in between and PyTorch's default init: gradients vanish."""
    layers: list[nn.Module] = []
    for _ in range(19):
        layers += [nn.Linear(64, 64), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(64, 10))


def relu_he_mlp() -> nn.Module:
    """The healthy control: ReLU with He init."""
    model = sigmoid_mlp()
    for i, m in enumerate(model):
        if isinstance(m, nn.Sigmoid):
            model[i] = nn.ReLU()
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def vanilla_rnn() -> tuple[nn.Module, torch.Tensor]:
    """A tanh RNN read out at the last of 300 steps, with its example batch."""

    class LastStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.RNN(2, 64, batch_first=True)
            self.head = nn.Linear(64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    return LastStep(), torch.randn(8, 300, 2)
