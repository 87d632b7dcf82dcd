"""Update rules: how the loop accumulates gradients (an :class:`~modelsafe.adversarial.parts.UpdateRule`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelsafe._checks import check_non_negative
from modelsafe.adversarial.parts import UpdateRule


@dataclass(frozen=True)
class Momentum(UpdateRule):
    """MI update: ``g <- mu*g + d/mean|d|`` per image (``mu=0``: no memory, I-FGSM). ``nesterov=True`` takes
    the gradient at the look-ahead ``x + alpha*mu*g`` (NI-FGSM). State: the (N, C, H, W) buffer g."""

    mu: float = 1.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_non_negative("momentum", self.mu)

    def init_state(self, x: torch.Tensor) -> dict:
        return {"momentum": torch.zeros_like(x)}

    def center(self, x: torch.Tensor, state: dict, alpha: float) -> torch.Tensor:
        return x + alpha * self.mu * state["momentum"] if self.nesterov else x

    def update(self, g: torch.Tensor, state: dict) -> torch.Tensor:
        scale = g.abs().mean(dim=tuple(range(1, g.dim())), keepdim=True)
        state["momentum"] = self.mu * state["momentum"] + g / scale.clamp_min(torch.finfo(g.dtype).tiny)
        return state["momentum"]
