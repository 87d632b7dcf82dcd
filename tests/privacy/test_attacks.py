"""Attacks find membership signal where there is some (a model that memorised 500 samples) and none where
there is none (both sets unseen)."""

import numpy as np
import pytest

from modelsafe.errors import UnknownNameError
from modelsafe.privacy import BlackBoxNNAttack, MetricAttack, ReferenceModels, create_mia, list_mias
from modelsafe.privacy.references import FitTrainer
from modelsafe.training import TrainConfig

from .conftest import tabular_model


def fit_eval(attack, s, n_bootstrap=0):
    attack.fit(s.target, s.known_members, s.known_nonmembers)
    return attack.evaluate(s.target, s.eval_members, s.eval_nonmembers, n_bootstrap=n_bootstrap)


@pytest.mark.parametrize("attack", [MetricAttack("loss"), MetricAttack("loss", per_class=True),
                                    BlackBoxNNAttack(epochs=60, seed=1)], ids=lambda a: a.label)
def test_memorised_members_are_detected(memorised, attack):
    report = fit_eval(attack, memorised, n_bootstrap=200)
    assert report.auc >= 0.7
    assert report.accuracy >= 0.65  # the attacker-chosen threshold works on held-out data
    assert report.intervals["auc"][0] > 0.6


@pytest.mark.parametrize("signal", ["correctness", "confidence", "entropy", "modified-entropy"])
def test_every_metric_attack_beats_chance(memorised, signal):
    assert fit_eval(MetricAttack(signal), memorised).auc > 0.65


def test_loss_and_confidence_rank_alike(memorised):
    a = MetricAttack("loss").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    b = MetricAttack("confidence").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    sa, sb = a.score(memorised.target, memorised.eval_nonmembers), b.score(memorised.target, memorised.eval_nonmembers)
    assert np.array_equal(np.argsort(sa, kind="stable"), np.argsort(sb, kind="stable"))


def test_unseen_vs_unseen_control_is_chance(memorised):
    u = memorised.unseen  # 6000 samples the target never saw, split into fake "members" and "non-members"
    known_m, known_u = u.subset(range(500)), u.subset(range(500, 1000))
    eval_m, eval_u = u.subset(range(1000, 3500)), u.subset(range(3500, 6000))
    for attack in (MetricAttack("loss"), BlackBoxNNAttack(epochs=20, seed=2)):
        attack.fit(memorised.target, known_m, known_u)
        report = attack.evaluate(memorised.target, eval_m, eval_u, n_bootstrap=0)
        assert abs(report.auc - 0.5) <= 0.05, attack.label
        assert abs(report.accuracy - 0.5) <= 0.05, attack.label


def test_whitebox_attack_detects_members(memorised):
    report = fit_eval(create_mia("whitebox", epochs=20, seed=0), memorised)
    assert report.auc >= 0.7
    assert report.details["layers"] == 1 and report.details["best_epoch"] >= 1


@pytest.fixture(scope="module")
def references(memorised):
    trainer = FitTrainer(TrainConfig(epochs=60, lr=0.05, batch_size=64, weight_decay=0.0), device="cpu")
    return ReferenceModels.train(memorised.population, tabular_model, trainer, num_models=3, train_size=500, seed=0)


@pytest.mark.parametrize("name, options", [("shadow", {"epochs": 10}),
                                           ("shadow", {"epochs": 10, "attack_model": "per-class"}),
                                           ("lira", {}), ("lira", {"fixed_variance": False}), ("rmia", {}),
                                           ("rmia", {"offline_a": 0.5})])
def test_reference_model_attacks_detect_members(memorised, references, name, options):
    report = fit_eval(create_mia(name, references=references, seed=0, **options), memorised)
    assert report.auc >= 0.7, report.attack
    assert report.details["num_models"] == 3


def test_reference_attack_trains_its_own_models(memorised):
    attack = create_mia("lira", population=memorised.population, model_factory=tabular_model, num_models=2,
                        train_size=300, trainer=FitTrainer(TrainConfig(epochs=5), device="cpu"))
    fit_eval(attack, memorised)
    assert len(attack.references) == 2 and attack.references.in_masks.sum(1).tolist() == [300, 300]


def test_same_seed_same_scores(memorised):
    scores = [BlackBoxNNAttack(epochs=3, seed=7).fit(memorised.target, memorised.known_members,
                                                     memorised.known_nonmembers)
              .score(memorised.target, memorised.eval_members) for _ in range(2)]
    np.testing.assert_array_equal(*scores)


def test_registry():
    assert list_mias() == sorted(["blackbox-nn", "confidence", "correctness", "entropy", "lira", "lira-online", "loss",
                                  "modified-entropy", "rmia", "rmia-online", "shadow", "whitebox"])
    assert create_mia("entropy", per_class=True).label == "entropy (per-class)"
    assert create_mia("blackbox-nn", prediction="logits").label == "blackbox-nn (logits)"
    with pytest.raises(UnknownNameError, match="valid names"):
        create_mia("nope")
