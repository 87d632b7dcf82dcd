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

from modelsafe._checks import (
    check_choice,
    check_fraction,
    check_non_negative,
    check_positive,
    check_positive_int,
)
from modelsafe.adversarial.parts import GradFn, GradientEstimator, PointEstimator

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
        return torch.cat([center.unsqueeze(0), uniform_neighbours(x, self.samples, self.beta * eps, generator)])

    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        g0 = grads[0]
        out = g0 + state["variance"]
        state["variance"] = grads[1:].sum(0) / self.samples - g0
        return out


def uniform_neighbours(x: torch.Tensor, samples: int, radius: float, generator: torch.Generator) -> torch.Tensor:
    """(samples, *x.shape) i.i.d. neighbours ``x + U(-radius, radius)`` elementwise, not clipped."""
    noise = torch.empty((samples, *x.shape), dtype=x.dtype, device=x.device)
    noise.uniform_(-radius, radius, generator=generator)
    return x.unsqueeze(0) + noise


def _per_image_mean_abs(g: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    return g.abs().mean(dim=dims, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)


@dataclass(frozen=True)
class PenalizedGradientNorm(GradientEstimator):
    """PGN (Ge et al., NeurIPS 2023, "Boosting Adversarial Transferability by Achieving Flat Local Maxima"):
    ``samples`` neighbours x' = c + U(-beta*eps, beta*eps) of the centre c, their gradients g', a second point
    x* = x' - alpha * g' / mean|g'| (per image and neighbour) and its gradient g*; the estimate is the mean
    over the neighbours of (1 - delta) g' + delta g*. Two sequential ``grad_fn`` calls of ``samples`` points
    each: 2N gradient evaluations per iteration. Defaults N = 20, beta (the paper's zeta) = 3, delta = 0.5.

    The look-ahead step alpha is the attack's step size, as in the paper (``step=None``, the default);
    ``step=s`` fixes it at ``s * eps`` instead. The normalisation g'/mean|g'| and the unclipped points follow
    the authors' code."""

    samples: int = 20
    beta: float = 3.0
    delta: float = 0.5
    step: float | None = None

    def __post_init__(self) -> None:
        check_positive_int("PenalizedGradientNorm samples", self.samples)
        check_positive("PenalizedGradientNorm beta", self.beta)
        check_fraction("PenalizedGradientNorm delta", self.delta)
        if self.step is not None:
            check_positive("PenalizedGradientNorm step", self.step)

    def estimate(self, grad_fn: GradFn, x: torch.Tensor, center: torch.Tensor, eps: float, state: dict,
                 generator: torch.Generator) -> torch.Tensor:
        near = uniform_neighbours(center, self.samples, self.beta * eps, generator)
        first = grad_fn(near)
        alpha = state["alpha"] if self.step is None else self.step * eps
        star = near - alpha * first / _per_image_mean_abs(first, (2, 3, 4))
        second = grad_fn(star)
        return ((1 - self.delta) * first + self.delta * second).mean(0)


@dataclass(frozen=True)
class GradientRelevance(PointEstimator):
    """GRA's gradient (Zhu et al., ICCV 2023, "Boosting Adversarial Transferability via Gradient Relevance
    Attack"): the gradient g at the centre and the mean gbar of ``samples`` gradients at neighbours
    x + U(-beta*eps, beta*eps) of the current iterate; with s the cosine similarity of g and gbar per image
    (over C, H, W), the estimate is s g + (1 - s) gbar. N + 1 gradient evaluations per iteration. Defaults
    N = 20, beta = 3.5 (the paper and its code). GRA's decay indicator is the update rule
    :class:`~modelsafe.adversarial.updates.DecayIndicator`. A zero gradient gives s = 0."""

    samples: int = 20
    beta: float = 3.5

    def __post_init__(self) -> None:
        check_positive_int("GradientRelevance samples", self.samples)
        check_positive("GradientRelevance beta", self.beta)

    def points(self, x: torch.Tensor, center: torch.Tensor, eps: float, generator: torch.Generator) -> torch.Tensor:
        return torch.cat([center.unsqueeze(0), uniform_neighbours(x, self.samples, self.beta * eps, generator)])

    def combine(self, grads: torch.Tensor, state: dict) -> torch.Tensor:
        g, mean = grads[0], grads[1:].mean(0)
        flat_g, flat_m = g.flatten(1), mean.flatten(1)
        norms = flat_g.norm(dim=1) * flat_m.norm(dim=1)
        s = torch.where(norms > 0, (flat_g * flat_m).sum(1) / torch.where(norms > 0, norms, 1.0), 0.0)
        s = s.view(-1, *[1] * (g.dim() - 1))
        return s * g + (1 - s) * mean


@dataclass(frozen=True)
class MaximinExpectedFlatness(GradientEstimator):
    """MEF (Qiu et al., "Boosting Adversarial Transferability with Low-Cost Optimization via Maximin Expected
    Flatness", arXiv 2024): the expected loss over a neighbourhood of the centre c, each neighbour shifted
    inside its own sub-region (radius xi*eps) by an approximation of the sub-region's inner step. Per
    iteration t and neighbour i = 1..N::

        x_i   = c + u_i + xi*eps * p_i,     u_i ~ U(-beta*eps, beta*eps) elementwise (not clipped)
        g_i   = grad L(x_i)
        p_i  <- g_i / mean|g_i| - inner_decay * p_i      (per image, over C, H, W; p_i = 0 at t = 0)

    and the estimate is mean_i g_i. ``p_i``, kept per neighbour index across iterations, is the "previous
    gradient inversion approximation": the sub-region's inner step takes the gradients of earlier iterations
    instead of a fresh gradient at c + u_i, so MEF makes one ``grad_fn`` call of N points, N gradient
    evaluations per iteration (PGN's 2N). The outer momentum is :class:`~modelsafe.adversarial.updates.Momentum`
    with mu = 0.5 (the ``mef`` preset).

    Defaults: N = 20, beta (``gamma`` in the authors' code) = 2, xi (``kesai`` there) = 0.15, inner_decay
    = 0.9; the authors' code and TransferAttack's ``mef.py`` also use T = 20 with alpha = 1.6/255 = eps/10 and
    outer decay 0.5 (an earlier version of the authors' code had kesai = 0.2). The equations follow the
    authors' code, which TransferAttack reproduces (``num_neighbor`` = 20 gradients per iteration, ``gamma``
    and ``kesai`` times eps). A zero gradient gives p_i = 0 - inner_decay * p_i instead of NaN."""

    samples: int = 20
    beta: float = 2.0
    xi: float = 0.15
    inner_decay: float = 0.9

    def __post_init__(self) -> None:
        check_positive_int("MaximinExpectedFlatness samples", self.samples)
        check_positive("MaximinExpectedFlatness beta", self.beta)
        check_non_negative("MaximinExpectedFlatness xi", self.xi)
        check_non_negative("MaximinExpectedFlatness inner_decay", self.inner_decay)

    def init_state(self, x: torch.Tensor) -> dict:
        """``inversion``: the (samples, N, C, H, W) buffers p_i, zero."""
        return {"inversion": torch.zeros((self.samples, *x.shape), dtype=x.dtype, device=x.device)}

    def estimate(self, grad_fn: GradFn, x: torch.Tensor, center: torch.Tensor, eps: float, state: dict,
                 generator: torch.Generator) -> torch.Tensor:
        inversion = state["inversion"]
        near = uniform_neighbours(center, self.samples, self.beta * eps, generator)
        grads = grad_fn(near + self.xi * eps * inversion)
        state["inversion"] = grads / _per_image_mean_abs(grads, (2, 3, 4)) - self.inner_decay * inversion
        return grads.mean(0)
