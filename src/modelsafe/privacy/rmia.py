"""``rmia``: the offline Robust Membership Inference Attack (Zarifzadeh, Liu, Shokri, ICML 2024) with k
reference models that never saw the scored samples.

For (x, y): Pr(x|θ) = p_y under the target, Pr(x) = ½[(1 + a)·mean_j Pr(x|θ_j) + (1 − a)] (the offline
correction for OUT-only references), ratio(x) = Pr(x|θ) / Pr(x); logs are computed from log-probabilities and
1 − p_y so that confident predictions keep full float64 resolution. The paper's score is the fraction of
population samples z with ratio(x) / ratio(z) > γ; with one population set shared by every x that fraction is a
non-decreasing function of ratio(x), so this implementation scores by log ratio(x): the same ranking (hence the
same ROC) without ties at multiples of 1/|Z|, which matter at low FPR.

``offline_a``: a float in [0, 1], or None (default) to choose it from a grid on the attacker-known members
vs non-members of the target (maximum AUC). Departure: the paper tunes ``a`` by attacking one of the
reference models, having no known members; the SafeCompress threat model gives the attacker known members.
The decision threshold is chosen on the same attacker-known data."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelsafe._checks import check_fraction
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.metrics import auc_from_groups, best_threshold
from modelsafe.privacy.references import ModelFactory, ReferenceModels, Trainer, UsesReferenceModels
from modelsafe.privacy.signals import negative_loss, wrong_mass

A_GRID = tuple(i / 10 for i in range(11))


class RMIAAttack(UsesReferenceModels, MembershipAttack):
    name = "rmia"

    def __init__(self, *, references: ReferenceModels | None = None, population=None,
                 model_factory: ModelFactory | None = None, trainer: Trainer | None = None, num_models: int = 4,
                 train_size: int | None = None, offline_a: float | None = None, **common):
        super().__init__(**common)
        self._init_references(references, population, model_factory, trainer, num_models, train_size)
        self.offline_a = None if offline_a is None else check_fraction("offline_a", offline_a)
        self.a_: float | None = self.offline_a

    def describe(self) -> dict:
        return {"name": self.name, "family": "reference", "mode": "offline", "a": self.a_,
                "a_tuned": self.offline_a is None, **self.reference_details()}

    def _probs(self, target: nn.Module, data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """log Pr(x|θ) under the target (N,) and the mean over reference models of 1 − Pr(x|θ_j) (N,)."""
        logits, refs = self.target_and_reference_logits(target, data, what)
        return negative_loss(logits, data.y), torch.stack([wrong_mass(r, data.y) for r in refs]).mean(dim=0)

    @staticmethod
    def _log_ratio(log_p_target: torch.Tensor, q_refs: torch.Tensor, a: float) -> np.ndarray:
        # Pr(x) = ½[(1 + a)(1 − q) + (1 − a)] = 1 − ½(1 + a)q, with q = mean_j (1 − Pr(x|θ_j))
        return (log_p_target - torch.log1p((-0.5 * (1.0 + a) * q_refs).clamp_min(-1.0 + 1e-16))).numpy()

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        self.num_classes_ = None
        pm, rm = self._probs(target, members, "known_members")
        pu, ru = self._probs(target, nonmembers, "known_nonmembers")
        if self.offline_a is None:
            aucs = [auc_from_groups(self._log_ratio(pm, rm, a), self._log_ratio(pu, ru, a)) for a in A_GRID]
            self.a_ = A_GRID[int(np.argmax(aucs))]
        m, u = self._log_ratio(pm, rm, self.a_), self._log_ratio(pu, ru, self.a_)
        self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])

    def _score(self, target: nn.Module, data) -> np.ndarray:
        return self._log_ratio(*self._probs(target, data, "data"), self.a_)
