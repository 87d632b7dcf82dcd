"""Attack networks. Each maps per-sample features to one membership logit per sample, shape (N,); the
membership probability is its sigmoid (the papers put the sigmoid inside the net and train with BCE; keeping
the logit is the same model, numerically safer, and keeps low-FPR scores from saturating at 1.0).

Networks are built on the ``meta`` device and initialised from a ``torch.Generator`` (see :func:`materialise`),
so building one never touches the global RNG; dropout draws from a generator too (:class:`SeededDropout`)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn


class SeededDropout(nn.Module):
    """Dropout whose masks come from ``self.generator`` (set by :func:`materialise`) instead of the global RNG."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _mlp(sizes: Sequence[int], final_relu: bool = True, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        if dropout and i == 0:
            layers.append(SeededDropout(dropout))
        layers.append(nn.Linear(a, b, device="meta"))
        if final_relu or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class NasrAttackNet(nn.Module):
    """The black-box attack of Nasr et al. (CCS 2018) as SafeCompress's ``Adversary`` builds it in its code.

    Prediction branch C→1024→512→64, label branch C→512→64 (ReLU after every layer), fusion
    128→256→64→1. Inputs: ``prediction`` (N, C) probabilities or logits, ``label`` (N, C) ±1 vector.
    Output: (N,) membership logits."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.prediction = _mlp([num_classes, 1024, 512, 64])
        self.label = _mlp([num_classes, 512, 64])
        self.fusion = _mlp([128, 256, 64, 1], final_relu=False)

    def forward(self, prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return self.fusion(torch.cat([self.prediction(prediction), self.label(label)], dim=1)).squeeze(1)


class PerClassAttackNet(nn.Module):
    """One small attack MLP per class (Shokri et al.'s class-specific attack models), C→hidden→1 on the
    prediction vector, evaluated for all samples at once by gathering each sample's class weights.

    Inputs: ``prediction`` (N, C), ``label`` (N, C) ±1 vector (selects the class). Output: (N,) logits.
    Trained jointly, but each class's weights only ever receive gradient from samples of that class."""

    def __init__(self, num_classes: int, hidden: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.w1 = nn.Parameter(torch.empty(num_classes, num_classes, hidden, device="meta"))
        self.b1 = nn.Parameter(torch.empty(num_classes, hidden, device="meta"))
        self.w2 = nn.Parameter(torch.empty(num_classes, hidden, device="meta"))
        self.b2 = nn.Parameter(torch.empty(num_classes, device="meta"))

    def forward(self, prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        cls = label.argmax(dim=1)
        hidden = torch.relu(torch.einsum("nc,nch->nh", prediction, self.w1[cls]) + self.b1[cls])
        return (hidden * self.w2[cls]).sum(dim=1) + self.b2[cls]


class GradientEncoder(nn.Module):
    """A4.6's gradient component for one weight gradient seen as a 1×H×W image: dropout, conv 5×5 (pad 2),
    batch norm, ReLU, 2×2 max-pool, flatten, dropout, 256→128→64 MLP. Departure: when the pooled map has
    more than ``max_features`` cells (large or several layers) an adaptive max-pool shrinks it to fit."""

    def __init__(self, height: int, width: int, dropout: float, max_features: int):
        super().__init__()
        pool: nn.Module = nn.Identity()
        h, w = height, width
        if height >= 2 and width >= 2:
            pool, h, w = nn.MaxPool2d(2), height // 2, width // 2
        if h * w > max_features:
            scale = math.sqrt(max_features / (h * w))
            h, w = max(1, int(h * scale)), max(1, int(w * scale))
            pool = nn.AdaptiveMaxPool2d((h, w))
        self.body = nn.Sequential(
            SeededDropout(dropout), nn.Conv2d(1, 1, 5, padding=2, device="meta"), nn.BatchNorm2d(1, device="meta"),
            nn.ReLU(), pool, nn.Flatten(), SeededDropout(dropout),
            nn.Linear(h * w, 256, device="meta"), nn.ReLU(), nn.Linear(256, 128, device="meta"), nn.ReLU(),
            nn.Linear(128, 64, device="meta"))

    def forward(self, grad: torch.Tensor) -> torch.Tensor:
        return self.body(grad)


class WhiteBoxAttackNet(nn.Module):
    """The white-box attack of SafeCompress (ML-Doctor's simplification of Nasr et al. S&P 2019),
    extended to several gradient inputs.

    Components (dropout ``p`` before each): logits C→128→64; loss 1→128→64; one :class:`GradientEncoder` per
    gradient shape in ``grad_shapes`` ((H, W) each); label C→128→64. Encoder: concat → dropout → 256 → dropout
    → 128 → dropout → 64 → 1 (ReLU between). Inputs: ``logits`` (N, C), ``loss`` (N, 1), ``label`` (N, C) ±1,
    then one (N, 1, H, W) tensor per gradient. Output: (N,) membership logits."""

    def __init__(self, num_classes: int, grad_shapes: Sequence[tuple[int, int]], dropout: float = 0.2,
                 max_grad_features: int = 16384):
        super().__init__()
        self.num_classes = num_classes
        self.output = _mlp([num_classes, 128, 64], final_relu=False, dropout=dropout)
        self.loss = _mlp([1, 128, 64], final_relu=False, dropout=dropout)
        self.grads = nn.ModuleList(GradientEncoder(h, w, dropout, max_grad_features) for h, w in grad_shapes)
        self.label = _mlp([num_classes, 128, 64], final_relu=False, dropout=dropout)
        width = 64 * (3 + len(grad_shapes))
        self.encoder = nn.Sequential(
            SeededDropout(dropout), nn.Linear(width, 256, device="meta"), nn.ReLU(), SeededDropout(dropout),
            nn.Linear(256, 128, device="meta"), nn.ReLU(), SeededDropout(dropout), nn.Linear(128, 64, device="meta"),
            nn.ReLU(), nn.Linear(64, 1, device="meta"))

    def forward(self, logits: torch.Tensor, loss: torch.Tensor, label: torch.Tensor, *grads: torch.Tensor
                ) -> torch.Tensor:
        parts = [self.output(logits), self.loss(loss), *(enc(g) for enc, g in zip(self.grads, grads)),
                 self.label(label)]
        return self.encoder(torch.cat(parts, dim=1)).squeeze(1)


Initialiser = Callable[[nn.Module, torch.Generator], None]


def nasr_init(net: nn.Module, gen: torch.Generator) -> None:
    """A4.5: every weight N(0, 0.01²), every bias 0."""
    for name, p in net.named_parameters():
        if name.endswith("bias") or name.split(".")[-1].startswith("b"):
            nn.init.zeros_(p)
        else:
            nn.init.normal_(p, 0.0, 0.01, generator=gen)


def whitebox_init(net: nn.Module, gen: torch.Generator) -> None:
    """A4.6: conv weights N(0, 1), linear weights Xavier-normal, biases 0, batch norm (1, 0)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 1.0, generator=gen)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight, generator=gen)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()


def materialise(net: nn.Module, init: Initialiser, gen: torch.Generator, device: torch.device) -> nn.Module:
    """Allocate a meta-built ``net`` on ``device``, initialise it with ``init`` drawing from ``gen`` (a CPU
    generator; parameters are initialised on the CPU and moved), and give its dropouts a generator on ``device``."""
    net.to_empty(device=torch.device("cpu"))
    with torch.no_grad():
        init(net, gen)
    net.to(device)
    dropout_gen = torch.Generator(device=device)
    dropout_gen.manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen)))
    for m in net.modules():
        if isinstance(m, SeededDropout):
            m.generator = dropout_gen
    return net
