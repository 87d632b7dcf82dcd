"""Gradient estimators: where an iteration takes loss gradients and how it combines them.

The estimators here are :class:`~modelsafe.adversarial.parts.PointEstimator` s: each returns the K points of
one iteration as a (K, N, C, H, W) tensor (point 0 is the centre: the current iterate, or its Nesterov
look-ahead) and later combines the K gradients at those points into one (N, C, H, W) gradient. The points
never depend on gradients, so the attack evaluates all of them in chunks of a configurable size instead of
one model call per point. Estimators that need gradients one after another implement
:class:`~modelsafe.adversarial.parts.GradientEstimator` ``.estimate`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelsafe._checks import check_choice, check_non_negative, check_positive, check_positive_int
from modelsafe.adversarial.parts import PointEstimator

WALK_STARTS = ("lookahead", "current")


def depth_first_walk(start: torch.Tensor, samples: int, radius: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Random walk ``x_i = x_{i-1} + u_i``, ``u_i ~ U(-radius, radius)`` elementwise, ``x_0 = start``.

    Returns the ``samples`` walk points x_1 .. x_N as a (samples, *start.shape) tensor. Points are not
    clipped to [0, 1] or to the eps-ball (as in the official code)."""
    steps = torch.empty((samples, *start.shape), dtype=start.dtype, device=start.device)
    steps.uniform_(-radius, radius, generator=generator)
    return start.unsqueeze(0) + steps.cumsum(0)


@dataclass(frozen=True)
class PlainGradient(PointEstimator):
    """One gradient at the centre point."""

    def points(self, x: torch.Tensor, center: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        return center.unsqueeze(0)

    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        return grads[0]


@dataclass(frozen=True)
class DepthFirstSampling(PointEstimator):
    """S-FGRM's depth-first sampling: the centre gradient g_0 plus ``samples`` gradients along a random walk
    with steps U(-beta*eps, beta*eps), averaged as (gamma*g_0 + sum g_i) / (N + gamma): N + 1 gradient
    evaluations per iteration. Defaults N = 12, beta = 1.5, gamma = 1 (the authors' ``smi_fgrm.py``).

    ``walk_start``: with a Nesterov look-ahead the centre gradient is taken at the look-ahead point; the walk
    starts there too (``"lookahead"``, default, the natural NI generalisation) or at the current iterate
    (``"current"``, what the official NI template would do). Without look-ahead both are the same."""

    samples: int = 12
    beta: float = 1.5
    gamma: float = 1.0
    walk_start: str = "lookahead"

    def __post_init__(self) -> None:
        check_positive_int("samples", self.samples)
        check_positive("beta", self.beta)
        check_non_negative("gamma", self.gamma)
        check_choice("walk_start", self.walk_start, WALK_STARTS)

    def points(self, x: torch.Tensor, center: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        start = center if self.walk_start == "lookahead" else x
        walk = depth_first_walk(start, self.samples, self.beta * eps, generator)
        return torch.cat([center.unsqueeze(0), walk])

    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        return (self.gamma * grads[0] + grads[1:].sum(0)) / (self.samples + self.gamma)


@dataclass(frozen=True)
class VarianceTuning(PointEstimator):
    """Variance tuning (VMI/VNI-FGSM, Wang & He 2021): the step uses g_t + v_{t-1}, where
    v_t = mean of ``samples`` gradients at i.i.d. neighbours x_t + U(-beta*eps, beta*eps) minus g_t.
    Neighbours are drawn around the current iterate even with a look-ahead (as the VT code). Defaults
    N = 20, beta = 1.5 (the paper; torchattacks uses N = 5)."""

    samples: int = 20
    beta: float = 1.5

    def __post_init__(self) -> None:
        check_positive_int("samples", self.samples)
        check_positive("beta", self.beta)

    def init_state(self, x: torch.Tensor) -> dict:
        return {"variance": torch.zeros_like(x)}

    def points(self, x: torch.Tensor, center: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        radius = self.beta * eps
        noise = torch.empty((self.samples, *x.shape), dtype=x.dtype, device=x.device)
        noise.uniform_(-radius, radius, generator=generator)
        return torch.cat([center.unsqueeze(0), x.unsqueeze(0) + noise])

    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        g0 = grads[0]
        out = g0 + state["variance"]
        state["variance"] = grads[1:].sum(0) / self.samples - g0
        return out
