"""Layers shared by the model zoo."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """Maps [0, 1] images to ``(x - mean) / std`` per channel. Lives inside every image model so that attacks
    and audits only ever see [0, 1] pixels. Input: (N, C, H, W); output: same shape."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        std_t = torch.as_tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1)
        if (std_t <= 0).any():
            raise ValueError(f"normalisation std must be > 0, got {list(std)}")
        self.register_buffer("mean", mean_t)
        self.register_buffer("std", std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


def channel_stats(mean: Sequence[float] | None, std: Sequence[float] | None, channels: int) -> tuple[list, list]:
    """Broadcast per-channel statistics to ``channels`` entries (default: mean 0.5, std 0.5)."""
    mean = [0.5] if mean is None else list(mean)
    std = [0.5] if std is None else list(std)
    if len(mean) == 1:
        mean = mean * channels
    if len(std) == 1:
        std = std * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std must have 1 or {channels} entries, got {len(mean)} and {len(std)}")
    return mean, std


def scaled(width: float, channels: int) -> int:
    """``channels`` scaled by a width multiplier, at least 1."""
    return max(1, int(round(channels * width)))
