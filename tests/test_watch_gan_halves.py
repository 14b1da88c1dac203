"""A plain-loop GAN (generator and critic in one module, one optimizer each) watched with one of
its optimizers: watch reads the layers that optimizer trains, not the other network's. Before,
both halves were read as one chain and the healthy GAN got a ``vanishing-gradient`` error (the
generator's gradients 3 orders under the critic's) and a ``loss-plateau`` error."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor import data


class GAN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.G = nn.Sequential(nn.Linear(16, 128), nn.ReLU(), nn.Linear(128, 64), nn.Sigmoid())
        self.D = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))


@pytest.mark.parametrize("half", ["G", "D"])
def test_each_half_is_watched_alone_and_the_healthy_gan_gets_no_finding(half):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = data.load("digits", seed=0).x_train.float() / 16.0
    gan = GAN()
    og = torch.optim.Adam(gan.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(gan.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with gd.watch(gan, og if half == "G" else od) as w:
            for _ in range(4):
                for xb in x.split(64):
                    fake = gan.G(torch.randn(len(xb), 16))
                    ones, zeros = torch.ones(len(xb), 1), torch.zeros(len(xb), 1)
                    d_loss = (F.binary_cross_entropy_with_logits(gan.D(xb), ones)
                              + F.binary_cross_entropy_with_logits(gan.D(fake.detach()), zeros))
                    od.zero_grad()
                    d_loss.backward()
                    od.step()
                    g_loss = F.binary_cross_entropy_with_logits(gan.D(fake), ones)
                    og.zero_grad()
                    g_loss.backward()
                    og.step()
                    w.step(g_loss if half == "G" else d_loss)
    meta, steps = w.records()
    other = "D" if half == "G" else "G"
    assert {ly["name"][0]: ly["trainable"] for ly in meta["layers"]} == {half: True, other: False}
    assert all(v is None for s in steps for k, v in s["grad_norm"].items() if k.startswith(other))
    assert all(v is not None for s in steps for k, v in s["grad_norm"].items() if k.startswith(half))
    assert [f.code for f in w.report().findings if f.severity in ("warning", "error")] == []
    lines = [str(m.message) for m in said if "not in the optimizer" in str(m.message)]
    assert len(lines) == 1 and "watch each network with its own optimizer" in lines[0]
