"""Step directions: ``sign`` (the FGSM family) and FGRM's data rescaling, in both published forms.

All functions take a (N, C, H, W) tensor (the momentum buffer) and return a tensor of the same shape and
dtype whose entries have the sign of the input. Exact zeros map to 0 and never produce NaN or inf.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from modelsafe._checks import check_choice, check_positive
from modelsafe.adversarial.parts import StepDirection

RESCALE_FORMS = ("official", "paper")


def rescale_paper(g: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """FGRM as written in the paper: ``scale * sign(g) * sigmoid(z)`` with ``z`` the per-image z-score of
    ``log2|g|`` over (C, H, W) (unbiased std). Magnitudes lie in (0, scale); mean about scale/2.

    Departure (NaN safety): the mean and std are taken over the *non-zero* entries only (a zero has no
    log and moves nothing anyway); with fewer than two non-zero entries or a zero std, ``z = 0``, so the
    result is ``sign(g)`` for ``scale = 2``."""
    g64 = g.double()
    mag = g64.abs()
    nonzero = mag > 0
    logs = torch.where(nonzero, torch.log2(torch.where(nonzero, mag, 1.0)), 0.0)
    dims = tuple(range(1, g.dim()))
    count = nonzero.sum(dims, keepdim=True)
    mean = logs.sum(dims, keepdim=True) / count.clamp_min(1)
    centred = torch.where(nonzero, logs - mean, 0.0)
    var = centred.square().sum(dims, keepdim=True) / (count - 1).clamp_min(1)
    std = var.sqrt()
    z = torch.where((count > 1) & (std > 0), centred / torch.where(std > 0, std, 1.0), 0.0)
    return (scale * torch.sigmoid(z) * torch.sign(g64)).to(g.dtype)


def rescale_official(g: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    """FGRM as the authors' code computes it (``rescaling_method``), per image *and channel* over (H, W):

    ``a = -log2|g|``, ``a_max = max a`` (= ``-log2 min|g|``), ``k = ceil(a_max - a + 1e-9)`` (octaves above the
    channel minimum, >= 1), ``w = scale * log1p(k / a_max)``, result ``w * sign(g)``.

    Departures (NaN safety; identical to the official values whenever ``min|g| <= 1/2`` and no entry is 0):
    zeros are left out of ``a_max`` and map to 0; ``a_max`` is floored at 1 in the division, because the
    official formula divides by it and diverges as ``min|g| -> 1`` (and is NaN beyond). Computed in float64."""
    g64 = g.double()
    mag = g64.abs()
    nonzero = mag > 0
    a = torch.where(nonzero, -torch.log2(torch.where(nonzero, mag, 1.0)), -torch.inf)
    amax = a.amax(dim=(-2, -1), keepdim=True)
    k = torch.ceil(torch.where(nonzero, amax - a, 0.0) + 1e-9)
    w = scale * torch.log1p(k / amax.clamp_min(1.0))
    return torch.where(nonzero, w * torch.sign(g64), 0.0).to(g.dtype)


@dataclass(frozen=True)
class SignStep(StepDirection):
    """``sign(g)``: the FGSM family's step direction."""

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        return torch.sign(g)


@dataclass(frozen=True)
class RescaleStep(StepDirection):
    """FGRM step direction. ``form="official"`` (default; the authors' code, :func:`rescale_official`) or
    ``"paper"`` (:func:`rescale_paper`). ``scale`` is the paper's rescale factor c (2)."""

    form: str = "official"
    scale: float = 2.0

    def __post_init__(self) -> None:
        check_choice("rescale", self.form, RESCALE_FORMS)
        check_positive("rescale scale", self.scale)

    def __call__(self, g: torch.Tensor) -> torch.Tensor:
        fn = rescale_official if self.form == "official" else rescale_paper
        return fn(g, self.scale)
