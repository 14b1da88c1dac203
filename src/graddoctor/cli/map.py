"""``graddoctor map``: print the layer map of a built-in model."""

from __future__ import annotations

import click
import torch
from torch import nn


def sigmoid_mlp(depth: int = 20, width: int = 64, n_in: int = 64, n_out: int = 10) -> nn.Sequential:
    """A plain ``depth``-layer sigmoid MLP with PyTorch's default init (the classic broken net)."""
    layers: list[nn.Module] = []
    d = n_in
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), nn.Sigmoid()]
        d = width
    layers.append(nn.Linear(d, n_out))
    return nn.Sequential(*layers)


@click.command("map")
@click.option("--depth", default=20, show_default=True, type=click.IntRange(min=1),
              help="Layers of the built-in sigmoid MLP.")
def map_command(depth: int) -> None:
    """Print the model map (layers in execution order) of a built-in sigmoid MLP."""
    from graddoctor.modelmap import ModelMap

    torch.manual_seed(0)
    model = sigmoid_mlp(depth)
    click.echo(str(ModelMap(model, torch.randn(8, 64))))
