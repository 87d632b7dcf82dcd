"""The interface every membership-inference attack implements: :class:`MembershipAttack`.

``fit(target, known_members, known_nonmembers)`` trains or calibrates the attack on data the attacker knows,
``score(target, data)`` gives per-sample membership scores (higher = more likely member) and
``evaluate(target, members, nonmembers)`` turns scores on held-out sets into an :class:`MIAReport`. Every attack
also picks, on attacker-side data, the decision threshold that ``evaluate`` uses for balanced accuracy."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from modelsafe._checks import check_positive_int
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.inputs import Samples, as_samples, check_disjoint
from modelsafe.privacy.metrics import FPR_LEVELS, auc_from_groups
from modelsafe.privacy.report import MIAReport
from modelsafe.utils import resolve_device


class MembershipAttack(ABC):
    """Base class. Subclasses implement :meth:`_fit` (which must set ``threshold_`` and ``num_classes_``) and
    :meth:`_score`. ``device=None`` runs where the target's parameters live; a device moves the target there.
    ``inference_batch_size`` is how many samples go through the target at once."""

    name: ClassVar[str] = ""
    #: attributes every process of a ``torchrun`` audit sets up alike (reference models, their recipe): left out
    #: when a fitted attack is sent from the rank that fitted it to the others
    unsent_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, inference_batch_size: int = 512, seed: int = 0, device: str | torch.device | None = None,
                 progress: bool = False):
        self.inference_batch_size = check_positive_int("inference_batch_size", inference_batch_size)
        self.seed = int(seed)
        self.device = resolve_device(device) if device is not None else None
        self.progress = progress
        self.threshold_: float | None = None
        self.num_classes_: int | None = None
        self.fit_seconds_: float | None = None

    # ------------------------------------------------------------------ description
    @property
    def label(self) -> str:
        """A name for tables that tells configured variants apart (e.g. ``"loss (per-class)"``)."""
        return self.name

    def describe(self) -> dict:
        """The settings that define this attack, for reports."""
        return {"name": self.name}

    # ------------------------------------------------------------------ interface
    def fit(self, target: nn.Module, known_members: Samples, known_nonmembers: Samples) -> MembershipAttack:
        """Train/calibrate on samples the attacker knows to be members and non-members of ``target``."""
        members = as_samples(known_members, "known_members")
        nonmembers = as_samples(known_nonmembers, "known_nonmembers")
        check_disjoint(members, nonmembers, "fit")
        start = time.perf_counter()
        self._fit(target, members, nonmembers)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def score(self, target: nn.Module, data: Samples) -> np.ndarray:
        """Membership scores (N,) float64 for the samples in ``data``; higher = more likely member."""
        self._check_fitted()
        return self._score(target, as_samples(data, "data"))

    def evaluate(self, target: nn.Module, members: Samples, nonmembers: Samples, *, n_bootstrap: int = 1000,
                 confidence: float = 0.95, fpr_levels: Sequence[float] = FPR_LEVELS,
                 sample_ids: np.ndarray | None = None) -> MIAReport:
        """Score held-out ``members`` and ``nonmembers`` (disjoint from the fit data) into an :class:`MIAReport`.
        ``sample_ids`` (members' ids then non-members') are stored with the scores. ``seconds`` in the report
        is fit time plus evaluation time."""
        self._check_fitted()
        m = as_samples(members, "members")
        u = as_samples(nonmembers, "nonmembers")
        check_disjoint(m, u, "evaluate")
        start = time.perf_counter()
        member_scores, nonmember_scores = self._score(target, m), self._score(target, u)
        return self.report(member_scores, nonmember_scores, score_seconds=time.perf_counter() - start,
                           n_bootstrap=n_bootstrap, confidence=confidence, fpr_levels=fpr_levels, sample_ids=sample_ids)

    def report(self, member_scores: np.ndarray, nonmember_scores: np.ndarray, *, score_seconds: float = 0.0,
               n_bootstrap: int = 1000, confidence: float = 0.95, fpr_levels: Sequence[float] = FPR_LEVELS,
               sample_ids: np.ndarray | None = None) -> MIAReport:
        """The :class:`MIAReport` of scores this fitted attack gave held-out members (M,) and non-members (U,)
        (what :meth:`evaluate` computes; for scores computed in parts, e.g. on several processes).
        ``score_seconds``: the time the scoring took; the report's ``seconds`` add the fit time."""
        self._check_fitted()
        return MIAReport.from_scores(self.label, member_scores, nonmember_scores, self.threshold_,
                                     fpr_levels=fpr_levels, n_bootstrap=n_bootstrap, confidence=confidence,
                                     seed=self.seed, seconds=score_seconds + (self.fit_seconds_ or 0.0),
                                     details=self.describe(), sample_ids=sample_ids)

    def score_model(self, target: nn.Module, members: Samples, nonmembers: Samples) -> dict[str, float]:
        """Quick figures of the fitted attack against (a new state of) ``target``, without refitting:
        balanced ``accuracy`` at the fitted threshold, ``advantage`` = 2·accuracy − 1, and ``auc``."""
        self._check_fitted()
        m = self._score(target, as_samples(members, "members"))
        u = self._score(target, as_samples(nonmembers, "nonmembers"))
        accuracy = 0.5 * (float(np.mean(m >= self.threshold_)) + float(np.mean(u < self.threshold_)))
        return {"accuracy": accuracy, "advantage": 2.0 * accuracy - 1.0, "auc": auc_from_groups(m, u)}

    # ------------------------------------------------------------------ for subclasses
    @abstractmethod
    def _fit(self, target: nn.Module, members, nonmembers) -> None: ...

    @abstractmethod
    def _score(self, target: nn.Module, data) -> np.ndarray: ...

    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise ModelsafeError(f"attack {self.label!r} is not fitted; call fit(target, known_members, "
                                 "known_nonmembers) first")

    def _check_classes(self, num_classes: int) -> None:
        if self.num_classes_ is not None and num_classes != self.num_classes_:
            raise ModelsafeError(f"attack {self.label!r} was fitted for {self.num_classes_} classes but the target "
                                 f"outputs {num_classes} (class-count mismatch)")
