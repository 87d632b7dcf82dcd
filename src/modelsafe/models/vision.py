"""Image classifiers written for small inputs (28-64 px): a small CNN, an MLP, CIFAR-style VGG (incl. the
SafeCompress papers' VGG-C) and ResNet-18.

Every model's first module is :class:`Normalize`, so inputs are (N, C, H, W) float images in [0, 1];
outputs are (N, num_classes) logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.models.layers import Normalize, channel_stats, scaled


class SmallCNN(nn.Module):
    """conv(32w)-pool-conv(64w)-pool-fc(128w)-fc(C), 3x3 kernels with padding 1.
    At width 1 on 28x28x1 inputs it has 421,642 parameters."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        c1, c2, hidden = scaled(width, 32), scaled(width, 64), scaled(width, 128)
        self.normalize = Normalize(*channel_stats(mean, std, in_channels))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(c2 * side * side, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


class MLP(nn.Module):
    """Flatten → Linear(512w) → ReLU → Linear(256w) → ReLU → Linear(C). Works on images (normalised first)
    and on flat feature vectors (tabular data: ``image_size=None``, ``in_channels`` = feature count)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int | None, width: float = 1.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 hidden: Sequence[int] = (512, 256)):
        super().__init__()
        if image_size is None:
            self.normalize: nn.Module = nn.Identity()
            in_features = in_channels
        else:
            self.normalize = Normalize(*channel_stats(mean, std, in_channels))
            in_features = in_channels * image_size * image_size
        layers: list[nn.Module] = [nn.Flatten()]
        for h in hidden:
            layers += [nn.Linear(in_features, scaled(width, h)), nn.ReLU()]
            in_features = scaled(width, h)
        layers.append(nn.Linear(in_features, num_classes))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.normalize(x))


VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """CIFAR-style VGG with BatchNorm and a width multiplier. Pooling stops once the map is 1x1, so 28x28 and
    32x32 inputs both work; a global average pool feeds a Linear(512w → C) classifier."""

    def __init__(self, config: str, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        self.normalize = Normalize(*channel_stats(mean, std, in_channels))
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for item in VGG_CONFIGS[config]:
            if item == "M":
                if side >= 2:
                    layers.append(nn.MaxPool2d(2))
                    side //= 2
                continue
            out = scaled(width, int(item))
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)))


# VGG16 configuration C (Simonyan & Zisserman 2015) as the SafeCompress/ITOP code builds it for CIFAR:
# ("1x1", c) is a 1x1 convolution with padding 1, which grows the map by 2 on each side pair.
VGG_C_CONFIG: list[int | str | tuple[str, int]] = [64, 64, "M", 128, 128, "M", 256, 256, ("1x1", 256), "M",
                                                   512, 512, ("1x1", 512), "M", 512, 512, ("1x1", 512), "M"]


class VGGC(nn.Module):
    """VGG-C, the CIFAR-100 model of the SafeCompress papers (Zhu et al., ASE 2022 / TSE 2024), in the layout
    of their code: conv-BN-ReLU blocks with biased 3x3 convolutions, 1x1 convolutions with padding 1 closing
    stages 3-5, max-pooling after each stage, then Linear(512w·s² → 512w)-ReLU-BN-Linear(512w → 512w)-ReLU-BN-
    Linear(512w → C) on the flattened s×s map (s = 2 for 32x32 inputs). On CIFAR-100 at width 1 it has
    11,353,792 conv/linear weights (the maskable ones) and 11,369,636 parameters in all. Module indices match
    the code (``features.0`` ... ``features.40``, ``classifier.0/3/6``), so per-layer densities line up."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        self.normalize = Normalize(*channel_stats(mean, std, in_channels))
        layers: list[nn.Module] = []
        channels, side = in_channels, image_size
        for item in VGG_C_CONFIG:
            if item == "M":
                if side < 2:
                    raise ModelsafeError(f"model 'vgg-c' needs larger inputs than {image_size}x{image_size} "
                                         "(its feature map shrinks below 1x1)")
                layers.append(nn.MaxPool2d(2))
                side //= 2
                continue
            kernel, padding = (1, 1) if isinstance(item, tuple) else (3, 1)
            out = scaled(width, item[1] if isinstance(item, tuple) else int(item))
            layers += [nn.Conv2d(channels, out, kernel, padding=padding), nn.BatchNorm2d(out), nn.ReLU()]
            side += 2 if kernel == 1 else 0
            channels = out
        self.features = nn.Sequential(*layers)
        hidden = scaled(width, 512)
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, hidden), nn.ReLU(), nn.BatchNorm1d(hidden),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.BatchNorm1d(hidden), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(x)).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18: 3x3 stride-1 stem, no max-pool, four stages of two basic blocks, global average
    pool, Linear(512w → C)."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int, width: float = 1.0,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        super().__init__()
        del image_size  # global pooling makes the network size-agnostic
        self.normalize = Normalize(*channel_stats(mean, std, in_channels))
        widths = [scaled(width, c) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages, cin = [], widths[0]
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.stages(self.stem(self.normalize(x))))
