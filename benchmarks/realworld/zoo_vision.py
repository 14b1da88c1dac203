"""Hand-written replicas of the popular vision model-zoo families, tiny, with the zoos' conventions.

torchvision and timm cannot be imported next to the CPU torch build here, so each family is
written out with its zoo's module naming (``layer1.0.conv1``, ``s1.b1``, ``stages.0.blocks.1``,
``blocks.0.0.conv_dw``, ``features.denseblock1.denselayer1``, ...) and init conventions
(zero-init residual gains, ConvNeXt layer scale 1e-6, He fan-out init for convolutions).
Widths and depths are cut down so one check takes well under a second; the structure is not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _he_fan_out(model: nn.Module) -> nn.Module:
    """torchvision's init: kaiming_normal_(fan_out, relu) for convs, BN weight 1 bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# ---------------------------------------------------------------- ResNet (torchvision naming)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample = None
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + idt)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != c * 4:
            self.downsample = nn.Sequential(nn.Conv2d(cin, c * 4, 1, stride, bias=False), nn.BatchNorm2d(c * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + idt)


class ResNet(nn.Module):
    """torchvision's ResNet, widths divided by 4 (``zero_init_residual`` as there)."""

    def __init__(self, block: type, layers: list[int], width: int = 16, classes: int = 10,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = width
        for i, n in enumerate(layers):
            c = width * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, c, 2 if (j == 0 and i > 0) else 1))
                cin = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)
        _he_fan_out(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(zero_init_residual: bool = True) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], zero_init_residual=zero_init_residual)


def resnet50() -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], width=8)


# ---------------------------------------------------------------- RegNet (timm naming: s1.b1)


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, rd: int, act: type = nn.ReLU) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, rd, 1)
        self.act = act()
        self.fc2 = nn.Conv2d(rd, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(s)


class ConvNormAct(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1,
                 act: type | None = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class RegBottleneck(nn.Module):
    def __init__(self, cin: int, c: int, stride: int, group_w: int = 8) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(cin, c)
        self.conv2 = ConvNormAct(c, c, 3, stride, groups=c // group_w)
        self.se = SqueezeExcite(c, max(cin // 4, 4))
        self.conv3 = ConvNormAct(c, c, act=None)
        nn.init.zeros_(self.conv3.bn.weight)  # timm: zero_init_last
        self.downsample = ConvNormAct(cin, c, 1, stride, act=None) if (stride != 1 or cin != c) else None
        self.act3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        return self.act3(self.conv3(self.se(self.conv2(self.conv1(x)))) + idt)


class RegNet(nn.Module):
    """timm's RegNetY layout: ``stem``, stages ``s1``..``s4`` of blocks ``b1``.., ``head.fc``."""

    def __init__(self, widths=(16, 32, 64, 128), depths=(1, 2, 4, 2), classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, 16, 3, 2)
        cin = 16
        for i, (w, d) in enumerate(zip(widths, depths)):
            stage = nn.Module()
            for j in range(d):
                stage.add_module(f"b{j + 1}", RegBottleneck(cin, w, 2 if j == 0 else 1))
                cin = w
            self.add_module(f"s{i + 1}", stage)
        self.head = nn.Module()
        self.head.fc = nn.Linear(cin, classes)
        self.depths = depths
        _he_fan_out(self)
        for m in self.modules():
            if isinstance(m, RegBottleneck):
                nn.init.zeros_(m.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, d in enumerate(self.depths):
            stage = getattr(self, f"s{i + 1}")
            for j in range(d):
                x = getattr(stage, f"b{j + 1}")(x)
        return self.head.fc(x.mean((2, 3)))


# ---------------------------------------------------------------- ConvNeXt (layer scale 1e-6)


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int, ls_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(c, 4 * c)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(ls_init * torch.ones(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv_dw(x).permute(0, 2, 3, 1))
        y = self.mlp.fc2(self.mlp.act(self.mlp.fc1(y))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """timm's ConvNeXt naming: ``stem.0``, ``stages.0.downsample``, ``stages.0.blocks.1``, ``head.fc``."""

    def __init__(self, dims=(16, 32, 64, 128), depths=(2, 2, 4, 2), classes: int = 10,
                 ls_init: float = 1e-6) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        self.stages = nn.Sequential()
        cin = dims[0]
        for i, (d, n) in enumerate(zip(dims, depths)):
            st = nn.Module()
            st.downsample = (nn.Sequential(LayerNorm2d(cin, eps=1e-6), nn.Conv2d(cin, d, 2, 2))
                             if i > 0 else nn.Identity())
            st.blocks = nn.Sequential(*[ConvNeXtBlock(d, ls_init) for _ in range(n)])
            self.stages.append(st)
            cin = d
        self.head = nn.Module()
        self.head.norm = nn.LayerNorm(cin, eps=1e-6)
        self.head.fc = nn.Linear(cin, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for st in self.stages:
            x = st.blocks(st.downsample(x))
        return self.head.fc(self.head.norm(x.mean((2, 3))))


# ---------------------------------------------------------------- EfficientNet / MobileNet


class InvertedResidual(nn.Module):
    """timm's ``InvertedResidual``: conv_pw -> bn1 -> conv_dw -> bn2 -> se -> conv_pwl -> bn3."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4, act: type = nn.SiLU,
                 se: bool = True) -> None:
        super().__init__()
        mid = cin * expand
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.act1 = act()
        self.conv_dw = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.act2 = act()
        self.se = SqueezeExcite(mid, max(cin // 4, 4), act) if se else nn.Identity()
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.has_skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.se(self.act2(self.bn2(self.conv_dw(y))))
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.has_skip else y


class EfficientNet(nn.Module):
    """timm's EfficientNet naming: ``conv_stem``, ``bn1``, ``blocks.0.0``, ``conv_head``, ``classifier``."""

    def __init__(self, act: type = nn.SiLU, se: bool = True, classes: int = 10,
                 cfg=((16, 1, 1), (24, 2, 2), (40, 2, 2), (80, 3, 2), (112, 3, 1))) -> None:
        super().__init__()
        self.conv_stem = nn.Conv2d(3, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.act1 = act()
        stages, cin = [], 16
        for c, n, s in cfg:
            stages.append(nn.Sequential(*[InvertedResidual(cin if j == 0 else c, c, s if j == 0 else 1,
                                                           act=act, se=se) for j in range(n)]))
            cin = c
        self.blocks = nn.Sequential(*stages)
        self.conv_head = nn.Conv2d(cin, 256, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(256)
        self.act2 = act()
        self.classifier = nn.Linear(256, classes)
        _he_fan_out(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.act2(self.bn2(self.conv_head(x)))
        return self.classifier(x.mean((2, 3)))


def mobilenet_v2(classes: int = 10) -> nn.Module:
    """torchvision's MobileNetV2 naming: ``features.N.conv.0.0`` with ReLU6, ``classifier.1``."""

    def cba(cin: int, cout: int, k: int = 1, s: int = 1, g: int = 1) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False),
                             nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))

    class IR(nn.Module):
        def __init__(self, cin: int, cout: int, s: int, t: int) -> None:
            super().__init__()
            mid = cin * t
            layers = ([cba(cin, mid)] if t != 1 else []) + [cba(mid, mid, 3, s, mid)]
            layers += [nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
            self.conv = nn.Sequential(*layers)
            self.use_res_connect = s == 1 and cin == cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    feats, cin = [cba(3, 16, 3, 2)], 16
    for t, c, n, s in ((1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 3, 2), (6, 32, 4, 2), (6, 48, 3, 1)):
        for j in range(n):
            feats.append(IR(cin, c, s if j == 0 else 1, t))
            cin = c
    feats.append(cba(cin, 256))
    model = nn.Module()
    model.features = nn.Sequential(*feats)
    model.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(256, classes))
    _he_fan_out(model)

    class MobileNetV2(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.classifier = model.features, model.classifier

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(self.features(x).mean((2, 3)))

    return MobileNetV2()


# ---------------------------------------------------------------- MLP-Mixer, Swin, DenseNet


class Mlp(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self, d: int, tokens: int) -> None:
        super().__init__()
        self.norm1, self.mlp_tokens = nn.LayerNorm(d), Mlp(tokens, tokens * 2)
        self.norm2, self.mlp_channels = nn.LayerNorm(d), Mlp(d, d * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))


class MlpMixer(nn.Module):
    """timm's MLP-Mixer naming: ``stem.proj``, ``blocks.N.mlp_tokens.fc1``, ``norm``, ``head``."""

    def __init__(self, d: int = 64, depth: int = 8, patch: int = 4, img: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Module()
        self.stem.proj = nn.Conv2d(3, d, patch, patch)
        tokens = (img // patch) ** 2
        self.blocks = nn.Sequential(*[MixerBlock(d, tokens) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)
        for m in self.modules():  # timm's jax-style init
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)
        nn.init.zeros_(self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem.proj(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


class WindowAttention(nn.Module):
    def __init__(self, d: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1])
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * (d // self.heads) ** -0.5) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        attn = attn + bias.reshape(n, n, -1).permute(2, 0, 1)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))


class SwinBlock(nn.Module):
    def __init__(self, d: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1, self.attn = nn.LayerNorm(d), WindowAttention(d, heads, window)
        self.norm2, self.mlp = nn.LayerNorm(d), Mlp(d, 4 * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, W, C]
        b, h, w, c = x.shape
        ws = self.window
        y = torch.roll(self.norm1(x), (-self.shift, -self.shift), (1, 2))
        y = y.reshape(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        y = self.attn(y).reshape(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
        x = x + torch.roll(y, (self.shift, self.shift), (1, 2))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.norm, self.reduction = nn.LayerNorm(4 * d), nn.Linear(4 * d, 2 * d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class Swin(nn.Module):
    """timm's Swin naming: ``patch_embed.proj``, ``layers.0.blocks.1.attn.qkv``, ``layers.1.downsample``."""

    def __init__(self, d: int = 32, depths=(2, 2, 2), heads=(2, 4, 8), window: int = 4, classes: int = 10) -> None:
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 2, 2)
        self.patch_embed.norm = nn.LayerNorm(d)
        self.layers = nn.Sequential()
        for i, (n, h) in enumerate(zip(depths, heads)):
            st = nn.Module()
            st.downsample = PatchMerging(d // 2) if i > 0 else nn.Identity()
            st.blocks = nn.Sequential(*[SwinBlock(d, h, window, 0 if j % 2 == 0 else window // 2)
                                        for j in range(n)])
            self.layers.append(st)
            d *= 2
        d //= 2
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.norm(self.patch_embed.proj(x).permute(0, 2, 3, 1))
        for st in self.layers:
            x = st.blocks(st.downsample(x))
        return self.head(self.norm(x).mean((1, 2)))


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(cin), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(4 * growth), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(feats, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.values():
            feats.append(layer(feats))
        return torch.cat(feats, 1)


def densenet(growth: int = 8, blocks=(3, 4, 4), classes: int = 10) -> nn.Module:
    """torchvision's DenseNet naming: ``features.denseblock1.denselayer1.conv1``, ``features.transition1``."""
    feats = nn.Sequential()
    feats.add_module("conv0", nn.Conv2d(3, 16, 3, 1, 1, bias=False))
    feats.add_module("norm0", nn.BatchNorm2d(16))
    feats.add_module("relu0", nn.ReLU(inplace=True))
    c = 16
    for i, n in enumerate(blocks):
        blk = DenseBlock({f"denselayer{j + 1}": DenseLayer(c + j * growth, growth) for j in range(n)})
        feats.add_module(f"denseblock{i + 1}", blk)
        c += n * growth
        if i < len(blocks) - 1:
            tr = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.Conv2d(c, c // 2, 1, bias=False),
                               nn.AvgPool2d(2))
            feats.add_module(f"transition{i + 1}", tr)
            c //= 2
    feats.add_module("norm5", nn.BatchNorm2d(c))

    class DenseNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features, self.classifier = feats, nn.Linear(c, classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(F.relu(self.features(x)).mean((2, 3)))

    return _he_fan_out(DenseNet())


def vgg11_bn(classes: int = 10) -> nn.Module:
    """torchvision's VGG-11 with BN: ``features.N`` convs, ``classifier.N`` (8 convs, plain chain)."""
    layers, cin = [], 3
    for v in (16, "M", 32, "M", 64, 64, "M", 128, 128, "M", 128, 128):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v

    class VGG(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Sequential(nn.Linear(cin * 4, 128), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(128, classes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.classifier(torch.flatten(self.features(x), 1))

    return _he_fan_out(VGG())


# ---------------------------------------------------------------- CLIP-style (root-held logit_scale)


class TinyClip(nn.Module):
    """Two towers and a learnable ``logit_scale`` held at the model root; returns the contrastive loss
    first (``(loss, logits_per_image)``), as contrastive image-text models do."""

    def __init__(self, d: int = 32, vocab: int = 100) -> None:
        super().__init__()
        self.visual = resnet18()
        self.visual.fc = nn.Linear(self.visual.fc.in_features, d)
        self.token_embedding = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 2 * d, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.text_projection = nn.Linear(d, d, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))  # log(1 / 0.07)

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = F.normalize(self.visual(image), dim=-1)
        txt = F.normalize(self.text_projection(self.transformer(self.token_embedding(text)).mean(1)), dim=-1)
        logits = self.logit_scale.exp() * img @ txt.T
        labels = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        return loss, logits
