"""``lira-online``: the online Likelihood Ratio Attack (Carlini et al., "Membership Inference Attacks From First
Principles", S&P 2022), with reference models trained on random halves of a population that holds every scored
sample, so that each sample has IN models (trained on it) and OUT models (not).

For a sample (x, y): φ = log(p_y / (1 − p_y)) of the target and of each reference model. The IN and OUT values
of the sample are each summarised by a Gaussian, centred at their median (as the LiRA code does; the mean by
option), and the score is the log-likelihood ratio

    score = log N(φ_target; μ_in, σ_in²) − log N(φ_target; μ_out, σ_out²).

``fixed_variance=True`` (the default; the strongest variant with few reference models) uses one σ_in and one
σ_out for all samples: the standard deviation of all IN (OUT) values pooled over the attacker-known samples;
otherwise σ is per sample (needs at least 2 IN and 2 OUT models per sample). The decision threshold is chosen
on the attacker-known members and non-members.

``queries``: ``"none"`` (default), ``"flip"`` or ``"flip-shift"`` query the target and the references also with
the mirrored image (and both moved by one pixel in four directions, zero-filled: 10 views); the Gaussians are
fitted per view and the log-likelihood ratios averaged over the views, as the LiRA code averages over its
augmented queries. Images only."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from modelsafe._checks import check_choice
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.metrics import best_threshold
from modelsafe.privacy.online import QUERIES, OnlineReferenceAttack, query_views
from modelsafe.privacy.signals import scaled_logit

MIN_SIGMA = 1e-6
CENTRES = ("median", "mean")


class OnlineLiRAAttack(OnlineReferenceAttack):
    """Online LiRA (see the module docstring); reference models as :class:`OnlineReferenceAttack`."""

    name = "lira-online"

    def __init__(self, *, fixed_variance: bool = True, center: str = "median", queries: str = "none", **options):
        super().__init__(**options)
        self.fixed_variance = bool(fixed_variance)
        if not self.fixed_variance and self.references is None and self.num_models < 4:
            raise ModelsafeError(f"lira-online with per-sample variance needs at least 2 IN and 2 OUT reference "
                                 f"models per sample: num_models must be >= 4, got {self.num_models}")
        self.center = check_choice("center", center, CENTRES)
        self.queries = check_choice("queries", queries, QUERIES)
        self.sigma_: tuple[float, float] | None = None

    @property
    def label(self) -> str:
        parts = ([] if self.fixed_variance else ["per-sample variance"]) + ([] if self.center == "median" else ["mean"])
        parts += [] if self.queries == "none" else [f"queries {self.queries}"]
        return f"{self.name} ({', '.join(parts)})" if parts else self.name

    def describe(self) -> dict:
        return {"name": self.name, "fixed_variance": self.fixed_variance, "center": self.center, "queries": self.queries,
                "sigma_in_out": self.sigma_, **self.reference_details()}

    def _values(self, target: nn.Module, data, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """φ of the target (V, N) and of every reference model (V, k, N) on each query view, and whether each
        model had each sample IN (k, N)."""
        logits, refs, inside = self.online_logits(target, data, what, query_views(self.queries, data))
        inside = inside.numpy()
        need = 2 if not self.fixed_variance else 1
        if (inside.sum(0) < need).any() or ((~inside).sum(0) < need).any():
            raise ModelsafeError(f"lira-online: every scored sample needs at least {need} IN and {need} OUT "
                                 "reference models")
        ref_phi = torch.stack([torch.stack([scaled_logit(r, data.y) for r in view]) for view in refs]).numpy()
        return torch.stack([scaled_logit(v, data.y) for v in logits]).numpy(), ref_phi, inside

    def _centre(self, values: np.ndarray) -> np.ndarray:
        return np.nanmedian(values, axis=1) if self.center == "median" else np.nanmean(values, axis=1)

    def _llr(self, phi: np.ndarray, ref_phi: np.ndarray, inside: np.ndarray) -> np.ndarray:
        """The likelihood ratio per query view (Gaussians fitted per view), averaged over the views."""
        dat_in, dat_out = np.where(inside, ref_phi, np.nan), np.where(inside, np.nan, ref_phi)
        mu_in, mu_out = self._centre(dat_in), self._centre(dat_out)
        if self.fixed_variance:
            sd_in, sd_out = self.sigma_
        else:
            sd_in = np.maximum(np.nanstd(dat_in, axis=1), MIN_SIGMA)
            sd_out = np.maximum(np.nanstd(dat_out, axis=1), MIN_SIGMA)
        return (_log_normal(phi, mu_in, sd_in) - _log_normal(phi, mu_out, sd_out)).mean(axis=0)

    def _fit(self, target: nn.Module, members, nonmembers) -> None:
        phi_m, ref_m, in_m = self._values(target, members, "known_members")
        phi_u, ref_u, in_u = self._values(target, nonmembers, "known_nonmembers")
        ref = np.concatenate([ref_m, ref_u], axis=2)  # (views, models, samples)
        inside = np.broadcast_to(np.concatenate([in_m, in_u], axis=1), ref.shape)
        self.sigma_ = (max(float(np.std(ref[inside])), MIN_SIGMA), max(float(np.std(ref[~inside])), MIN_SIGMA))
        m, u = self._llr(phi_m, ref_m, in_m), self._llr(phi_u, ref_u, in_u)
        self.threshold_ = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])

    def _score(self, target: nn.Module, data) -> np.ndarray:
        return self._llr(*self._values(target, data, "data"))


def _log_normal(x: np.ndarray, mu: np.ndarray, sigma) -> np.ndarray:
    """log N(x; mu, sigma²), elementwise."""
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi)
