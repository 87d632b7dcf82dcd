"""``lira``: the offline Likelihood Ratio Attack (Carlini et al., "Membership Inference Attacks From First
Principles", S&P 2022) with k reference models that never saw the scored samples ("OUT" models).

For a sample (x, y): φ = log(p_y / (1 − p_y)) of the target and of each reference model; fit a Gaussian to the
references' φ and score the target by z = (φ_target − μ_out) / σ_out. Carlini's one-sided p-value is Φ(z), a
monotone transform of z, so z ranks samples identically and keeps low-FPR resolution. ``fixed_variance=True``
(recommended with few reference models) uses one σ for all samples: the standard deviation of all reference φ
on the attacker-known samples, as the official code pools it; otherwise σ is per sample (needs k >= 2).

Departures: no query augmentations (the official code averages flipped/shifted queries); the decision
threshold is chosen on the attacker-known members and non-members of the target."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.metrics import best_threshold
from modelsafe.privacy.references import ModelFactory, ReferenceModels, Trainer, UsesReferenceModels
from modelsafe.privacy.signals import scaled_logit

MIN_SIGMA = 1e-6


class LiRAAttack(UsesReferenceModels, MembershipAttack):
    name = "lira"

    def __init__(self, *, references: ReferenceModels | None = None, population=None,
                 model_factory: ModelFactory | None = None, trainer: Trainer | None = None, num_models: int = 4,
                 train_size: int | None = None, fixed_variance: bool = True, **common):
        super().__init__(**common)
        self._init_references(references, population, model_factory, trainer, num_models, train_size)
        self.fixed_variance = bool(fixed_variance)
        self.sigma_: float | None = None

    @property
    def label(self) -> str:
        return self.name if self.fixed_variance else f"{self.name} (per-sample variance)"

    def describe(self) -> dict:
        return {"name": self.name, "family": "reference", "mode": "offline", "fixed_variance": self.fixed_variance,
                "sigma": self.sigma_, **self.reference_details()}

    def _phis(self, target: nn.Module, data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """φ of the target (N,) and of each reference model (k, N)."""
        logits, refs = self.target_and_reference_logits(target, data, what)
        return scaled_logit(logits, data.y), torch.stack([scaled_logit(r, data.y) for r in refs])

    def _z(self, phi: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
        mu = ref.mean(dim=0)
        sigma = self.sigma_ if self.fixed_variance else ref.std(dim=0).clamp_min(MIN_SIGMA)
        return ((phi - mu) / sigma).numpy()

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        self.num_classes_ = None
        if not self.fixed_variance and len(self.reference_models()) < 2:
            raise ModelsafeError("lira with per-sample variance needs at least 2 reference models "
                                 "(or use fixed_variance=True)")
        phi_m, ref_m = self._phis(target, members, "known_members")
        phi_u, ref_u = self._phis(target, nonmembers, "known_nonmembers")
        self.sigma_ = max(float(torch.cat([ref_m, ref_u], dim=1).std()), MIN_SIGMA)
        m, u = self._z(phi_m, ref_m), self._z(phi_u, ref_u)
        self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])

    def _score(self, target: nn.Module, data) -> np.ndarray:
        return self._z(*self._phis(target, data, "data"))
