"""Risk statistics of a safety test and how finely they resolve candidates.

A membership safety test scores every held-out attacker-known sample: ``members`` (n1,) and ``nonmembers``
(n0,), membership scores in [0, 1] (higher = more likely member). Three statistics turn them into a risk in
[-1, 1] (higher = less safe):

* ``advantage``: TPR − FPR at the attacker's calibrated threshold (2·balanced accuracy − 1; the papers');
* ``auc``: 2·AUC − 1, threshold-free;
* ``gap``: mean member score − mean non-member score (for a confidence score, the member/non-member
  confidence gap), threshold-free and with the smallest variance of the three on bounded scores.

All candidates of one mask update are scored on the *same* samples, so their differences are paired.
:class:`PairedBootstrap` draws one set of resampled indices per update (common random numbers) and gives each
candidate's standard error and the standard error of its difference from a reference candidate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from modelsafe._checks import check_positive_int
from modelsafe.errors import UnknownNameError
from modelsafe.privacy.metrics import auc_from_groups

ScoreFn = Callable[[np.ndarray, np.ndarray, float], float]


def advantage(members: np.ndarray, nonmembers: np.ndarray, threshold: float) -> float:
    """TPR − FPR with "member" meaning score ≥ ``threshold``."""
    return float(np.mean(members >= threshold)) - float(np.mean(nonmembers >= threshold))


def auc_risk(members: np.ndarray, nonmembers: np.ndarray, threshold: float) -> float:
    """2·AUC − 1 (the threshold is unused)."""
    del threshold
    return 2.0 * auc_from_groups(members, nonmembers) - 1.0


def gap(members: np.ndarray, nonmembers: np.ndarray, threshold: float) -> float:
    """Mean member score − mean non-member score (the threshold is unused)."""
    del threshold
    return float(np.mean(members)) - float(np.mean(nonmembers))


RISK_STATISTICS: dict[str, ScoreFn] = {"advantage": advantage, "auc": auc_risk, "gap": gap}


def check_risk(name: str) -> str:
    """``name`` if it is one of :data:`RISK_STATISTICS`, else an "unknown safety-test risk" error."""
    if name not in RISK_STATISTICS:
        raise UnknownNameError("safety-test risk", name, list(RISK_STATISTICS))
    return name


def all_risks(members: np.ndarray, nonmembers: np.ndarray, threshold: float) -> dict[str, float]:
    """Every statistic of :data:`RISK_STATISTICS` on one candidate's scores."""
    return {name: fn(members, nonmembers, threshold) for name, fn in RISK_STATISTICS.items()}


class PairedBootstrap:
    """``rounds`` resamples (with replacement) of ``n_members`` and ``n_nonmembers`` positions, drawn once
    from ``seed`` and applied to every candidate's scores, so that differences between candidates are judged
    on the same resampled samples."""

    def __init__(self, n_members: int, n_nonmembers: int, rounds: int = 200, seed: int = 0):
        check_positive_int("bootstrap rounds", rounds)
        rng = np.random.default_rng(seed)
        self.members = rng.integers(0, n_members, size=(rounds, n_members))
        self.nonmembers = rng.integers(0, n_nonmembers, size=(rounds, n_nonmembers))

    def replicates(self, members: np.ndarray, nonmembers: np.ndarray, statistic: str,
                   threshold: float) -> np.ndarray:
        """(rounds,) values of ``statistic`` on the resampled scores of one candidate."""
        fn = RISK_STATISTICS[check_risk(statistic)]
        return np.array([fn(members[i], nonmembers[j], threshold)
                         for i, j in zip(self.members, self.nonmembers, strict=True)])

    def resolution(self, scores: Sequence[tuple[np.ndarray, np.ndarray]], statistic: str,
                   thresholds: Sequence[float], reference: int) -> dict:
        """Per candidate: ``se`` (bootstrap standard error of its risk) and ``paired_se`` (of its risk minus the
        ``reference`` candidate's, 0 for the reference itself); plus ``spread`` (max − min risk) and
        ``resolved``: whether the spread exceeds twice the largest paired standard error."""
        values = [RISK_STATISTICS[statistic](m, u, t) for (m, u), t in zip(scores, thresholds, strict=True)]
        reps = [self.replicates(m, u, statistic, t) for (m, u), t in zip(scores, thresholds, strict=True)]
        se = [float(np.std(r, ddof=1)) for r in reps]
        paired = [float(np.std(r - reps[reference], ddof=1)) for r in reps]
        spread = max(values) - min(values)
        return {"statistic": statistic, "risks": values, "se": se, "paired_se": paired, "spread": spread,
                "resolved": bool(spread > 2.0 * max(paired))}
