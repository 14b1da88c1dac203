"""check's poor-init of normalisation gains drawn near zero (diagnose/checktime/norm_gains.py), the
norm-gain remedy that sets them to 1, and autofix acting on it at its first check: a model that
must trigger it (Hugging Face's stock MobileViT: BatchNorm gains ~ N(0, 0.02)) and controls that
must not (zero-init residual, Gemma's 1 + w gain, a healthy LayerNorm net)."""

from __future__ import annotations

import warnings

import torch
from torch import nn

import graddoctor as gd
from graddoctor.diagnose.checktime.norm_gains import small_norm_gains
from graddoctor.measure.norm_scale import effective_gain
from graddoctor.modelmap import ModelMap


def _mobilevit():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    torch.manual_seed(0)
    cfg = MobileViTConfig(image_size=32, patch_size=2, hidden_sizes=[32, 48, 64],
                          neck_hidden_sizes=[8, 16, 24, 32, 40, 48, 96], num_attention_heads=2, num_labels=4)
    return MobileViTForImageClassification(cfg)


def _poor_norm_init(findings):
    return [f for f in findings if f.code == "poor-init" and f.remedies == ["norm-gain"]]


def test_stock_mobilevit_norm_gains_are_found_and_set_to_one():
    model = _mobilevit()
    x = {"pixel_values": torch.randn(16, 3, 32, 32)}
    report = gd.check(model, x)
    (f,) = _poor_norm_init(report.findings)
    assert f.evidence["norms_small"] >= 20 and f.evidence["median_small_gain"] < 0.05
    # the whole report: the gradient and signal findings read through the small gains ask for no
    # He re-draw on top (it trained to 1.45 in 60 steps, against 0.27 with the gains reset alone)
    res = gd.repair(model, report, x)
    assert [c.remedy for c in res.changes] == ["norm-gain"] and len(res.changes[0].modules) == len(f.layers)
    mods = dict(res.model.named_modules())
    assert all(torch.all(mods[n].weight == 1.0) for n in f.layers)
    assert not _poor_norm_init(gd.check(res.model, x).findings)


class _Gemma(nn.Module):
    """Gemma's RMSNorm: gain parametrised as 1 + w, w initialised to 0."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + self.weight)


_Gemma.__name__ = "GemmaRMSNorm"


class _Block(nn.Module):  # a zero-init residual block: its last BatchNorm's gain is 0 on purpose
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c)
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


def test_deliberate_or_reparametrised_gains_are_no_finding():
    zero_init_residual = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                       *[_Block(8) for _ in range(4)], nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                       nn.Linear(8, 4))
    gemma = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), _Gemma(16))], nn.Linear(16, 2))
    healthy = nn.Sequential(*[m for _ in range(4) for m in (nn.Linear(16, 16), nn.LayerNorm(16))], nn.Linear(16, 2))
    for net, x in ((zero_init_residual, torch.randn(4, 3, 8, 8)), (gemma, torch.randn(4, 16)),
                   (healthy, torch.randn(4, 16))):
        assert small_norm_gains(ModelMap(net, x), net) == [], type(net[1]).__name__
    assert abs(effective_gain(gemma[1], (4, 16)) - 1.0) < 0.15  # 1 + w at w = 0 (64 samples)


def test_exactly_half_the_gains_at_zero_is_zero_init_residual_not_a_fault():
    class Res(nn.Module):  # LayerNorm'd residual branches, each branch's last norm zeroed: 4 of 8
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.LayerNorm(16), nn.ReLU(),
                                                      nn.Linear(16, 16), nn.LayerNorm(16)) for _ in range(4))
            for b in self.blocks:
                nn.init.zeros_(b[4].weight)

        def forward(self, x):
            for b in self.blocks:
                x = x + b(x)
            return x

    net, x = Res(), torch.randn(8, 16)
    assert small_norm_gains(ModelMap(net, x), net) == []


def test_a_one_plus_w_gain_at_zero_in_effect_is_set_to_w_zero():
    gemma = nn.Sequential(*[m for _ in range(3) for m in (nn.Linear(16, 16), _Gemma(16))], nn.Linear(16, 2))
    for m in gemma.modules():
        if isinstance(m, _Gemma):
            nn.init.constant_(m.weight, -1.0)  # gain 1 + w = 0
    x = torch.randn(8, 16)
    (f,) = _poor_norm_init(small_norm_gains(ModelMap(gemma, x), gemma))
    res = gd.repair(gemma, [f], x)
    assert [c.remedy for c in res.changes] == ["norm-gain"]
    assert all(torch.all(m.weight == 0.0) for m in res.model.modules() if isinstance(m, _Gemma))


def test_autofix_sets_zeroed_gains_to_one_at_its_first_check_without_lowering_the_rate():
    torch.manual_seed(0)
    net = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(16, 16), nn.LayerNorm(16), nn.GELU())],
                        nn.Linear(16, 4))
    for m in net.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.zeros_(m.weight)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(256, 16)
    y = x[:, :4].argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with gd.watch(net, opt, autofix=True) as w:
            for t in range(30):
                xb, yb = x[t % 8 * 32:(t % 8 + 1) * 32], y[t % 8 * 32:(t % 8 + 1) * 32]
                loss = nn.functional.cross_entropy(net(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                w.step(loss)
    first = w.fixes[0]
    assert first["step"] == 10 and "norm-gain" in first["remedies"] and "lower-lr" not in first["remedies"]
    assert all(torch.all(m.weight != 0) for m in net.modules() if isinstance(m, nn.LayerNorm))
    assert opt.param_groups[0]["lr"] == 1e-3
