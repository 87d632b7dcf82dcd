"""``rmia-online``: the online Robust Membership Inference Attack (Zarifzadeh, Liu, Shokri, ICML 2024), with
reference models trained on random halves of a population that holds every scored sample (IN and OUT models,
:mod:`modelsafe.privacy.online`).

For (x, y): Pr(x|θ) = p_y under the target and Pr(x) = mean_j Pr(x|θ_j) over all reference models, IN and OUT
(with balanced halves, the average of the IN and OUT means, as the paper's online attack); ratio(x) =
Pr(x|θ) / Pr(x), computed from log-probabilities (log-sum-exp over the models). The paper's score is the
fraction of population samples z with ratio(x) / ratio(z) > γ; with one population set shared by every x that
fraction is a non-decreasing function of ratio(x), so the score is log ratio(x): the same ranking (hence the
same ROC) without ties at multiples of 1/|Z|. The decision threshold is chosen on the attacker-known members and
non-members."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from modelsafe.privacy.metrics import best_threshold
from modelsafe.privacy.online import OnlineReferenceAttack
from modelsafe.privacy.signals import negative_loss


class OnlineRMIAAttack(OnlineReferenceAttack):
    """Online RMIA (see the module docstring); reference models as :class:`OnlineReferenceAttack`."""

    name = "rmia-online"

    def describe(self) -> dict:
        return {"name": self.name, **self.reference_details()}

    def _log_ratio(self, target: nn.Module, data, what: str) -> np.ndarray:
        logits, refs, _ = self.online_logits(target, data, what)
        logits, refs = logits[0], refs[0]
        log_refs = torch.stack([negative_loss(r, data.y) for r in refs])  # (k, N) log Pr(x|θ_j)
        log_px = torch.logsumexp(log_refs, dim=0) - math.log(log_refs.shape[0])
        return (negative_loss(logits, data.y) - log_px).numpy()

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        m = self._log_ratio(target, members, "known_members")
        u = self._log_ratio(target, nonmembers, "known_nonmembers")
        self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])

    def _score(self, target: nn.Module, data) -> np.ndarray:
        return self._log_ratio(target, data, "data")
