"""Convolutional nets: CIFAR-style ResNets (depth 6n+2, with or without shortcuts) and plain stacks."""

from __future__ import annotations

import torch
from torch import nn

from graddoctor.errors import InputError
from graddoctor.zoo.common import activation as make_activation
from graddoctor.zoo.common import choice, positive, seeded
from graddoctor.zoo.init import apply_init, resolve


def _conv(dims: int) -> type[nn.Module]:
    return nn.Conv1d if dims == 1 else nn.Conv2d


def _bn(dims: int, c: int) -> nn.Module:
    return nn.BatchNorm1d(c) if dims == 1 else nn.BatchNorm2d(c)


class BasicBlock(nn.Module):
    """He et al. 2016 basic block: conv3-BN-act-conv3-BN (+ shortcut) -> act.

    The shortcut is the identity, or a 1x1 conv (+BN) projection where the
    shape changes (option B). ``shortcut=False`` gives the same block without the add.
    """

    def __init__(self, cin: int, cout: int, stride: int, shortcut: bool, batchnorm: bool,
                 activation: str, dims: int = 2) -> None:
        super().__init__()
        conv, bias = _conv(dims), not batchnorm
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=bias)
        self.bn1 = _bn(dims, cout) if batchnorm else nn.Identity()
        self.act1 = make_activation(activation)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=bias)
        self.bn2 = _bn(dims, cout) if batchnorm else nn.Identity()
        self.act2 = make_activation(activation)
        self.shortcut: nn.Module | None = None
        if shortcut:
            if stride != 1 or cin != cout:
                proj = [conv(cin, cout, 1, stride=stride, bias=bias)]
                self.shortcut = nn.Sequential(*proj, *([_bn(dims, cout)] if batchnorm else []))
            else:
                self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act2(out)


class ConvNet(nn.Module):
    """stem -> stages -> global average pool -> Linear head."""

    def __init__(self, stem: nn.Module, stages: nn.Module, channels: int, num_classes: int,
                 dims: int) -> None:
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dims == 1 and x.dim() == 2:  # (B, L) sequences: one channel
            x = x.unsqueeze(1)
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def cnn(depth: int = 20, shortcut: bool = True, batchnorm: bool = True, in_channels: int = 3,
        num_classes: int = 10, width: int = 16, activation: str = "relu",
        init: str | float = "he", seed: int = 0, kind: str = "resnet", dims: int = 2,
        std: float | None = None, bias: float | None = None) -> ConvNet:
    """A CIFAR-style ResNet (``kind="resnet"``) or a plain conv stack (``kind="plain"``).

    ``resnet``: depth = 6n+2 (20, 32, 56, 110): a 3x3 stem conv, three stages of n
    basic blocks with ``width``, 2x``width``, 4x``width`` channels (stride 2 at the
    start of stages 2 and 3), global average pooling, a Linear head. ``shortcut=False``
    drops the residual adds (the "plain" nets of He et al. 2016, same layers).
    Parameter count (w = width, c = in_channels, k = 9 = 3x3 taps, K = num_classes,
    batchnorm=True, shortcut=True)::

        c*w*k + 2w                                        stem conv + BN
        + sum over blocks: k*cin*cout + k*cout*cout + 4*cout   (two convs + two BNs)
        + 2 projections: cin*cout + 2*cout                 (stage 2 and 3 entries)
        + 4w*K + K                                         head

    ResNet-20 at defaults (c=3, w=16, K=10): 272,474 parameters (He et al. report 0.27M
    with option-A shortcuts; ours uses 1x1 projections, +2,752).

    ``plain``: any depth >= 2: ``depth - 1`` conv3x3 [BN] act layers (the stem, then
    ``depth - 2`` split into three stages of w, 2w, 4w channels, stride 2 at stage 2
    and 3), then pool and head.
    Parameter count: sum over the convs of k*cin*cout + 2*cout (BN weight and bias; without
    BN the conv bias, cout), plus the head (see ``plain_param_count``); depth 2 at c=3, w=16, K=10:
    432 + 32 + 170 = 634.

    ``dims=1`` builds the same with Conv1d (inputs (B, C, L), or (B, L) as one channel).
    Works at any input size >= 4 (8x8, 28x28, 32x32, ...).

    Example:
        >>> net = cnn(depth=8, width=4, in_channels=1)
        >>> net(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    choice("kind", kind, ("resnet", "plain"))
    choice("dims", dims, (1, 2))
    positive("depth", depth, 2)
    positive("width", width)
    positive("in_channels", in_channels)
    positive("num_classes", num_classes)
    make_activation(activation)
    resolve(init, std)
    if kind == "resnet" and (depth - 2) % 6:
        raise InputError(f"depth={depth} is not 6n+2 for a CIFAR ResNet; use 8, 14, 20, 32, 56, 110, "
                         f"... or kind='plain'")
    conv, bias_ok = _conv(dims), not batchnorm
    with seeded(seed):
        stem = nn.Sequential(conv(in_channels, width, 3, padding=1, bias=bias_ok),
                             *([_bn(dims, width)] if batchnorm else []), make_activation(activation))
        widths = (width, 2 * width, 4 * width)
        stages = []
        cin = width
        if kind == "resnet":
            n = (depth - 2) // 6
            for s, cout in enumerate(widths):
                blocks = [BasicBlock(cin if b == 0 else cout, cout, 2 if (s and b == 0) else 1,
                                     shortcut, batchnorm, activation, dims) for b in range(n)]
                stages.append(nn.Sequential(*blocks))
                cin = cout
        else:
            convs = depth - 2  # after the stem conv and before the head
            sizes = [convs // 3 + (1 if i < convs % 3 else 0) for i in range(3)]
            for s, (cout, size) in enumerate(zip(widths, sizes)):
                layers: list[nn.Module] = []
                for b in range(size):
                    layers += [conv(cin, cout, 3, stride=2 if (s and b == 0) else 1, padding=1,
                                    bias=bias_ok),
                               *([_bn(dims, cout)] if batchnorm else []), make_activation(activation)]
                    cin = cout
                stages.append(nn.Sequential(*layers))
        model = ConvNet(stem, nn.Sequential(*stages), cin, num_classes, dims)
        apply_init(model, init, std=std, activation=activation, bias=bias)
    return model


def resnet_param_count(depth: int = 20, in_channels: int = 3, width: int = 16,
                       num_classes: int = 10, dims: int = 2) -> int:
    """The documented parameter count of ``cnn(kind="resnet", shortcut=True, batchnorm=True)``."""
    k = 9 if dims == 2 else 3
    n = (depth - 2) // 6
    count = in_channels * width * k + 2 * width
    cin = width
    for cout in (width, 2 * width, 4 * width):
        for b in range(n):
            c0 = cin if b == 0 else cout
            count += k * c0 * cout + k * cout * cout + 4 * cout
            if b == 0 and c0 != cout:
                count += c0 * cout + 2 * cout
        cin = cout
    return count + 4 * width * num_classes + num_classes


def plain_param_count(depth: int = 20, in_channels: int = 3, width: int = 16,
                      num_classes: int = 10, batchnorm: bool = True, dims: int = 2) -> int:
    """The documented parameter count of ``cnn(kind="plain")``."""
    k = 9 if dims == 2 else 3
    convs = depth - 2
    sizes = [convs // 3 + (1 if i < convs % 3 else 0) for i in range(3)]
    count, cin = 0, in_channels
    for cout in [width] + [c for c, n in zip((width, 2 * width, 4 * width), sizes) for _ in range(n)]:
        count += k * cin * cout + (2 * cout if batchnorm else cout)
        cin = cout
    return count + cin * num_classes + num_classes
