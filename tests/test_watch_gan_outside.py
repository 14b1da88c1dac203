"""A plain-loop GAN (G and D in one module, one optimizer each) watched with G's optimizer: D's
layers get gradients from G's loss but another optimizer steps them, so they are not part of the
run the rules judge. Before: G's small input-side gradients next to D's large ones read as a
3-order "vanishing-gradient" error, and the rising adversarial loss as a "loss-plateau" error."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

import graddoctor as gd
from graddoctor.data.digits import digits
from graddoctor.runlog import mark_unfrozen


class GAN(nn.Module):
    def __init__(self, act: type[nn.Module] = nn.ReLU, depth: int = 0) -> None:
        super().__init__()
        hidden = [m for _ in range(depth) for m in (nn.Linear(128, 128), act())]
        self.G = nn.Sequential(nn.Linear(16, 128), act(), *hidden, nn.Linear(128, 64), nn.Sigmoid())
        self.D = nn.Sequential(nn.Linear(64, 128), nn.LeakyReLU(0.2), nn.Linear(128, 1))


def _train(gan: GAN, epochs: int = 8):
    x = digits().x_train
    og = torch.optim.Adam(gan.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(gan.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with gd.watch(gan, og) as w:
            for _ in range(epochs):
                for xb in x.split(64):
                    fake = gan.G(torch.randn(len(xb), 16))
                    dl = F.binary_cross_entropy_with_logits(gan.D(xb), torch.ones(len(xb), 1)) + \
                        F.binary_cross_entropy_with_logits(gan.D(fake.detach()), torch.zeros(len(xb), 1))
                    od.zero_grad()
                    dl.backward()
                    od.step()
                    gl = F.binary_cross_entropy_with_logits(gan.D(fake), torch.ones(len(xb), 1))
                    og.zero_grad()
                    gl.backward()
                    og.step()
                    w.step(gl)
    return w, [str(c.message) for c in caught]


def test_the_other_network_of_a_gan_is_outside_the_run_and_raises_no_error():
    torch.manual_seed(0)
    w, said = _train(GAN())
    meta, steps = w.records()
    flags = {ly["name"]: (ly["trainable"], ly.get("outside_optimizer", False)) for ly in meta["layers"]}
    assert flags == {"G.0": (True, False), "G.2": (True, False), "D.0": (False, True), "D.2": (False, True)}
    assert steps[0]["grad_norm"]["D.0"] is not None  # still recorded, only not judged
    assert mark_unfrozen(meta, steps) is meta  # its gradients are no unfreezing
    assert any("not in the optimizer" in m for m in said)  # the attach-time line stays
    assert not [f.code for f in w.report().findings if f.severity == "error"], w.report().findings


def test_the_watched_network_is_still_judged():
    # the control: G itself a 6-layer sigmoid stack, its gradients vanishing inside it
    torch.manual_seed(0)
    w, _ = _train(GAN(act=nn.Sigmoid, depth=5), epochs=4)
    assert "vanishing-gradient" in {f.code for f in w.report().findings}, w.report().findings
