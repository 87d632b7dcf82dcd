"""Update rules: how the loop accumulates gradients (an :class:`~modelsafe.adversarial.parts.UpdateRule`),
and GRA's decay indicator, a per-pixel multiplier of the step."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelsafe._checks import check_fraction, check_non_negative
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


@dataclass(frozen=True)
class DecayIndicator(Momentum):
    """GRA's update (Zhu et al., ICCV 2023): the MI momentum of :class:`Momentum` plus the decay indicator M,
    a per-pixel multiplier of the step (``step_scale``): after each update, M <- eta * M where the sign of the
    new momentum differs from the previous one, else M is kept; the step is alpha * M * direction(g).
    M starts at 1/eta and the momentum at 0, so after the first update M = 1 wherever the momentum is
    non-zero (as the authors' code). Default eta = 0.94 (the paper). State: ``momentum`` and ``indicator``."""

    eta: float = 0.94

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fraction("DecayIndicator eta", self.eta, closed_low=False)

    def init_state(self, x: torch.Tensor) -> dict:
        return {**super().init_state(x), "indicator": torch.full_like(x, 1 / self.eta)}

    def update(self, g: torch.Tensor, state: dict) -> torch.Tensor:
        previous = torch.sign(state["momentum"])
        buffer = super().update(g, state)
        flipped = torch.sign(buffer) != previous
        state["indicator"] = torch.where(flipped, state["indicator"] * self.eta, state["indicator"])
        return buffer

    def step_scale(self, state: dict) -> torch.Tensor:
        return state["indicator"]
