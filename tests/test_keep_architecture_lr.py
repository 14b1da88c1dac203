"""``repair(..., keep_architecture=True, train_loader=...)`` sets a learning rate that trains: the
range test's default pick, not the valley (which picked 2.7e-5 for Adam on a 20-layer tanh MLP at
the edge of chaos: 0.847 after 6 epochs on digits against 0.944 at the default pick)."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


def test_the_rate_set_for_a_deep_tanh_mlp_is_not_decades_low():
    data = gd.data.load("digits", seed=0)
    torch.manual_seed(0)
    layers = [nn.Linear(64, 64), nn.Tanh()]
    for _ in range(19):
        layers += [nn.Linear(64, 64), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(64, 10))
    x, y = data.x_train[:64], data.y_train[:64]
    loader, _ = data.loaders(batch_size=64, seed=0)
    result = gd.repair(model, gd.check(model, x, target=y), example_inputs=x, keep_architecture=True,
                       train_loader=loader)
    assert result.lr is not None and 2e-4 < result.lr < 1e-2, result.lr
