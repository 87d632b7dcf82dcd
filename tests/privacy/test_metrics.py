"""Metrics against hand-built score vectors."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modelsafe.errors import ModelsafeError
from modelsafe.privacy import MIAReport, balanced_accuracy, best_threshold, roc_auc, roc_curve, tpr_at_fpr
from modelsafe.privacy.metrics import bootstrap_intervals


def vectors(members, nonmembers):
    scores = np.r_[members, nonmembers].astype(float)
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    return scores, labels


def test_perfect_and_reversed_separation():
    s, y = vectors([3, 4, 5], [0, 1, 2])
    assert roc_auc(s, y) == 1.0
    assert tpr_at_fpr(s, y, 0.0) == 1.0
    assert best_threshold(s, y) == 2.5
    assert balanced_accuracy(s, y, 2.5) == 1.0
    assert roc_auc(-s, y) == 0.0
    assert tpr_at_fpr(-s, y, 0.5) == 0.0


def test_auc_counts_pairs_and_half_ties():
    # member 2 beats non-members 1 and ties 2 -> 1.5; member 1 ties 1 -> 0.5; of 4 pairs: 2/4
    s, y = vectors([2, 1], [1, 2])
    assert roc_auc(s, y) == pytest.approx(0.5)
    s, y = vectors([0.9, 0.8, 0.4], [0.7, 0.3])  # pairs won: 2 + 2 + 1 = 5 of 6
    assert roc_auc(s, y) == pytest.approx(5 / 6)


def test_roc_curve_points():
    s, y = vectors([0.9, 0.8, 0.4], [0.7, 0.3])
    fpr, tpr, thr = roc_curve(s, y)
    np.testing.assert_allclose(fpr, [0, 0, 0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert math.isinf(thr[0]) and list(thr[1:]) == [0.9, 0.8, 0.7, 0.4, 0.3]
    fpr, tpr, _ = roc_curve(*vectors([1, 1, 0], [1, 0]))  # ties collapse into one point
    np.testing.assert_allclose(fpr, [0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 2 / 3, 1])


def test_tpr_at_fpr_is_exact_and_ignores_interpolation():
    members = np.arange(100, 200)  # 100 members
    nonmembers = np.r_[np.arange(0, 98), 150, 180]  # two non-members score among the members
    s, y = vectors(members, nonmembers)
    assert tpr_at_fpr(s, y, 0.0) == pytest.approx(19 / 100)  # above 180: 181..199
    assert tpr_at_fpr(s, y, 0.01) == pytest.approx(49 / 100)  # one FP allowed: above 150
    assert tpr_at_fpr(s, y, 0.0199) == pytest.approx(49 / 100)  # still one FP allowed
    assert tpr_at_fpr(s, y, 0.02) == pytest.approx(1.0)
    assert tpr_at_fpr(s, y, 0.001) == tpr_at_fpr(s, y, 0.0)  # below 1/n_nonmembers = 0%


def test_best_threshold_maximises_balanced_accuracy():
    s, y = vectors([5, 6, 1], [0, 2, 3, 4])
    t = best_threshold(s, y)
    assert t == pytest.approx(4.5)
    assert balanced_accuracy(s, y, t) == pytest.approx(0.5 * (2 / 3 + 1))
    assert best_threshold(*vectors([0, 0], [1, 1])) == math.inf  # no threshold helps: call nobody a member


def test_matches_scikit_learn_on_random_scores():
    rng = np.random.default_rng(0)
    s, y = vectors(rng.normal(0.5, 1, 700).round(1), rng.normal(0, 1, 900).round(1))  # with ties
    assert roc_auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, _ = roc_curve(s, y)
    for level in (0.01, 0.05, 0.2):
        assert tpr_at_fpr(s, y, level) == pytest.approx(tpr[fpr <= level].max())


def test_report_figures_and_bootstrap_intervals():
    rng = np.random.default_rng(1)
    m, u = rng.normal(1, 1, 2000), rng.normal(0, 1, 2000)
    r = MIAReport.from_scores("toy", m, u, threshold=0.5, n_bootstrap=300, seed=3)
    assert r.auc == pytest.approx(0.76, abs=0.02)  # Phi(1/sqrt(2)) = 0.760
    assert r.accuracy == pytest.approx(0.5 * (np.mean(m >= 0.5) + np.mean(u < 0.5)))
    assert r.advantage == pytest.approx(2 * r.accuracy - 1)
    assert r.max_advantage >= r.advantage
    lo, hi = r.intervals["auc"]
    assert lo < r.auc < hi and hi - lo < 0.05
    lo, hi = r.intervals["tpr@1%"]
    assert lo <= r.tpr_at_fpr[0.01] <= hi
    # intervals are reproducible and match the direct call
    again = bootstrap_intervals(m, u, (0.01, 0.001, 0.0001, 0.0), 300, 0.95, 3)
    assert again["auc"] == r.intervals["auc"]


def test_report_rejects_bad_scores():
    with pytest.raises(ModelsafeError, match="non-finite"):
        MIAReport.from_scores("x", np.array([1.0, np.nan]), np.array([0.0]), threshold=0.5, n_bootstrap=0)
    with pytest.raises(ModelsafeError, match="need members and non-members"):
        MIAReport.from_scores("x", np.array([]), np.array([0.0]), threshold=0.5, n_bootstrap=0)


def test_bootstrap_gives_intervals_for_accuracy_and_advantage_without_moving_the_others():
    rng = np.random.default_rng(4)
    m, u = rng.normal(0.8, 1, 400), rng.normal(0, 1, 500)
    r = MIAReport.from_scores("toy", m, u, threshold=0.4, n_bootstrap=400, seed=2)
    lo, hi = r.intervals["accuracy"]
    assert lo < r.accuracy < hi and hi - lo < 0.1
    assert r.intervals["advantage"] == pytest.approx((2 * lo - 1, 2 * hi - 1))
    plain = bootstrap_intervals(m, u, [0.01], 400, 0.95, 2)  # without a threshold: the same AUC/TPR draws
    assert plain["auc"] == r.intervals["auc"] and "accuracy" not in plain
