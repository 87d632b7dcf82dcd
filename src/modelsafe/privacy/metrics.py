"""Metrics of a membership score: ROC curve, AUC, TPR at a fixed FPR, balanced accuracy at a threshold, the
threshold that maximises balanced accuracy, and bootstrap confidence intervals.

Conventions: ``scores`` are (N,) floats, higher = more likely member; ``labels`` are (N,) with 1 = member and
0 = non-member. A sample is predicted a member iff ``score >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from modelsafe.errors import ModelsafeError

FPR_LEVELS: tuple[float, ...] = (0.01, 0.001, 0.0001, 0.0)


def _split(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise ModelsafeError(f"scores {scores.shape} and labels {labels.shape} differ in length")
    if not np.all(np.isfinite(scores)):
        raise ModelsafeError(f"membership scores hold {int((~np.isfinite(scores)).sum())} non-finite values")
    if not np.all((labels == 0) | (labels == 1)):
        raise ModelsafeError("membership labels must be 0 (non-member) or 1 (member)")
    members, nonmembers = scores[labels == 1], scores[labels == 0]
    if members.size == 0 or nonmembers.size == 0:
        raise ModelsafeError(f"need members and non-members, got {members.size} and {nonmembers.size}")
    return members, nonmembers


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full ROC curve: (fpr, tpr, thresholds), one point per distinct score plus the origin
    (scikit-learn's ``roc_curve`` with every point kept, after this module's input checks).

    ``thresholds`` decrease from +inf; point i counts the samples with ``score >= thresholds[i]``."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    members, nonmembers = _split(scores, labels)
    s = np.concatenate([members, nonmembers])
    y = np.concatenate([np.ones(members.size), np.zeros(nonmembers.size)])
    fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=False)
    thresholds[0] = np.inf  # scikit-learn before 1.3 put max(score) + 1 there
    return fpr, tpr, thresholds


def auc_from_groups(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """P(member score > non-member score) + 0.5 P(tie): the area under the ROC curve (Mann-Whitney)."""
    ranks = rankdata(np.concatenate([members, nonmembers]))
    n1, n0 = members.size, nonmembers.size
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    return auc_from_groups(*_split(scores, labels))


def tpr_from_groups(members: np.ndarray, nonmembers: np.ndarray, fpr: float) -> float:
    """The highest TPR over thresholds whose FPR is at most ``fpr`` (exact, no interpolation).

    With ``k = floor(fpr * n_nonmembers)`` non-members allowed above the threshold, that is the fraction of
    members scoring strictly above the (k+1)-th highest non-member score."""
    k = math.floor(fpr * nonmembers.size + 1e-9)
    if k >= nonmembers.size:
        return 1.0
    cutoff = np.partition(nonmembers, nonmembers.size - 1 - k)[nonmembers.size - 1 - k]
    return float(np.mean(members > cutoff))


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    if not 0.0 <= fpr <= 1.0:
        raise ModelsafeError(f"fpr must lie in [0, 1], got {fpr}")
    return tpr_from_groups(*_split(scores, labels), fpr)


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """(TPR + TNR) / 2 when samples with ``score >= threshold`` are called members."""
    members, nonmembers = _split(scores, labels)
    return 0.5 * (float(np.mean(members >= threshold)) + float(np.mean(nonmembers < threshold)))


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold maximising balanced accuracy on (attacker-side) data: the midpoint between the ROC point
    that attains the maximum and the next lower distinct score (±inf at the ends). Ties go to the highest
    such threshold."""
    fpr, tpr, thresholds = roc_curve(scores, labels)
    best = int(np.argmax(tpr - fpr))
    if best == 0:
        return math.inf
    if best == thresholds.size - 1:
        return -math.inf
    return float(0.5 * (thresholds[best] + thresholds[best + 1]))


def bootstrap_intervals(members: np.ndarray, nonmembers: np.ndarray, fpr_levels: Sequence[float],
                        n_bootstrap: int, confidence: float, seed: int,
                        threshold: float | None = None) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for AUC and TPR at each FPR level, resampling members and non-members
    separately (the class sizes stay fixed). Keys: ``"auc"`` and ``"tpr@<level>"``; with the attack's decision
    ``threshold`` also ``"accuracy"`` (balanced accuracy at that threshold) and ``"advantage"`` (2·accuracy − 1)."""
    rng = np.random.default_rng(seed)
    n1, n0 = members.size, nonmembers.size
    aucs, accs = np.empty(n_bootstrap), np.empty(n_bootstrap)
    tprs = np.empty((len(fpr_levels), n_bootstrap))
    for b in range(n_bootstrap):
        m = members[rng.integers(0, n1, n1)]
        u = np.sort(nonmembers[rng.integers(0, n0, n0)])
        below = np.searchsorted(u, m, side="left")
        ties = np.searchsorted(u, m, side="right") - below
        aucs[b] = (below.sum() + 0.5 * ties.sum()) / (n1 * n0)
        if threshold is not None:
            accs[b] = 0.5 * (float(np.mean(m >= threshold)) + float(np.mean(u < threshold)))
        for i, level in enumerate(fpr_levels):
            k = math.floor(level * n0 + 1e-9)
            tprs[i, b] = 1.0 if k >= n0 else float(np.mean(m > u[n0 - 1 - k]))
    lo, hi = 50.0 * (1.0 - confidence), 100.0 - 50.0 * (1.0 - confidence)
    out = {"auc": (float(np.percentile(aucs, lo)), float(np.percentile(aucs, hi)))}
    if threshold is not None:
        acc_lo, acc_hi = float(np.percentile(accs, lo)), float(np.percentile(accs, hi))
        out.update(accuracy=(acc_lo, acc_hi), advantage=(2.0 * acc_lo - 1.0, 2.0 * acc_hi - 1.0))
    for i, level in enumerate(fpr_levels):
        out[fpr_key(level)] = (float(np.percentile(tprs[i], lo)), float(np.percentile(tprs[i], hi)))
    return out


def fpr_key(level: float) -> str:
    """``"tpr@1%"``, ``"tpr@0.1%"``, ``"tpr@0.01%"``, ``"tpr@0%"``."""
    return f"tpr@{100.0 * level:g}%"
