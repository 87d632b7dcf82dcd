"""Text classifier for token-id inputs."""

from __future__ import annotations

import torch
from torch import nn

from modelsafe.models.layers import scaled


class TextClassifier(nn.Module):
    """Embedding (index 0 = padding) → masked mean pool → Linear(128w) → ReLU → Linear(C).

    Input: (N, L) int64 token ids, 0-padded. Output: (N, C) logits."""

    def __init__(self, num_classes: int, vocab_size: int, embed_dim: int = 64, width: float = 1.0):
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (index 0 is padding), got {vocab_size}")
        dim = scaled(width, embed_dim)
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        hidden = scaled(width, 128)
        self.classifier = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = (tokens != 0).unsqueeze(-1).to(self.embedding.weight.dtype)
        summed = (self.embedding(tokens) * mask).sum(1)
        pooled = summed / mask.sum(1).clamp_min(1.0)
        return self.classifier(pooled)
