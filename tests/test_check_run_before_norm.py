"""A run of small layers that a normalisation ends compounds nothing (the norm divides the shrink
out of the forward signal and back into the gradient): the canonical DCGAN discriminator
(N(0, 0.02) convs, BatchNorm from its second conv) gets no poor-init, while the same small init
with no norm after it, or in the run into the output, still does; PyTorch's default init is named."""

from __future__ import annotations

import torch
from torch import nn

import graddoctor as gd


def dcgan_discriminator(nc: int = 3, ndf: int = 32, norm: bool = True) -> nn.Module:
    bn = (lambda c: nn.BatchNorm2d(c)) if norm else (lambda c: nn.Identity())
    net = nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), bn(ndf * 2), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), bn(ndf * 4), nn.LeakyReLU(0.2),
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Flatten())
    for m in net.modules():  # the DCGAN paper's init, as in pytorch/examples
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return net


def test_the_dcgan_discriminator_gets_no_poor_init():
    torch.manual_seed(0)
    report = gd.check(dcgan_discriminator(), torch.randn(16, 3, 32, 32), target=torch.rand(16, 1))
    assert "poor-init" not in report.codes, report.findings


def test_the_same_init_without_its_norms_is_still_poor_init():
    torch.manual_seed(0)
    report = gd.check(dcgan_discriminator(norm=False), torch.randn(16, 3, 32, 32), target=torch.rand(16, 1))
    assert "poor-init" in report.codes


def test_small_layers_after_the_last_norm_are_still_read():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.ReLU(),
                        *[m for _ in range(4) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))
    for m in list(net)[3:-1]:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
    [f] = [f for f in gd.check(net, torch.randn(32, 32)).findings if f.code == "poor-init"]
    assert f.layers == ["3", "5", "7", "9"]


def test_pytorch_default_init_is_named_in_the_finding():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(5) for m in (nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))
    [f] = [f for f in gd.check(net, torch.randn(32, 64)).findings if f.code == "poor-init"]
    assert f.evidence.get("pytorch_default_init") is True and "PyTorch's default weights" in f.message
