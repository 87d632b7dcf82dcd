"""Per-sample calibration, on a task whose samples differ in difficulty: most samples are easy (tight, well
separated class clusters: members and non-members alike get a near-zero loss), a few are mislabelled (only a
model trained on them fits them). A global loss threshold at 1% FPR is set by the easiest non-members, so it
finds few more members than false positives; online LiRA and RMIA compare each sample with reference models
that did and did not train on it, and find the memorised mislabelled members."""

import pytest
import torch

from modelsafe.data.info import TensorData
from modelsafe.privacy import MetricAttack, ReferenceModels, create_mia
from modelsafe.privacy.references import FitTrainer
from modelsafe.training import TrainConfig

from .conftest import CLASSES, FEATURES, tabular_model, train

HARD = 0.1
MEMBERS, REFERENCE, EVAL_NONMEMBERS = 800, 200, 600


def mixed_difficulty(n: int, seed: int) -> TensorData:
    """Samples at ``centres[y]`` plus small noise; a fraction ``HARD`` relabelled at random (mislabelled)."""
    centres = 3.0 * torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    x = centres[y] + 0.5 * torch.randn(n, FEATURES, generator=gen)
    hard = torch.rand(n, generator=gen) < HARD
    y[hard] = (y[hard] + torch.randint(1, CLASSES, (int(hard.sum()),), generator=gen)) % CLASSES
    return TensorData(x, y)


@pytest.fixture(scope="module")
def task():
    """Target trained on MEMBERS samples; online references on balanced halves of 2 * MEMBERS samples that
    hold every known and evaluation sample (so each reference model trains on as many samples as the
    target)."""
    members = mixed_difficulty(MEMBERS, seed=1)
    others = mixed_difficulty(REFERENCE + EVAL_NONMEMBERS, seed=2)  # members + others = 2 * MEMBERS
    target = train(tabular_model(0), members)
    half = MEMBERS // 2
    sets = {"known_members": members.subset(range(half)), "eval_members": members.subset(range(half, MEMBERS)),
            "known_nonmembers": others.subset(range(REFERENCE)),
            "eval_nonmembers": others.subset(range(REFERENCE, REFERENCE + EVAL_NONMEMBERS))}
    population = TensorData(torch.cat([members.x, others.x]), torch.cat([members.y, others.y]))
    trainer = FitTrainer(TrainConfig(epochs=60, lr=0.05, batch_size=64, weight_decay=0.0), device="cpu")
    refs = ReferenceModels.train_balanced(population, tabular_model, trainer, num_models=4, seed=0)
    return target, sets, refs


def run(attack, task):
    target, sets, _ = task
    attack.fit(target, sets["known_members"], sets["known_nonmembers"])
    return attack.evaluate(target, sets["eval_members"], sets["eval_nonmembers"], n_bootstrap=0)


def test_global_loss_stays_near_the_fpr_where_online_attacks_find_the_memorised_samples(task):
    loss = run(MetricAttack("loss"), task)
    lira = run(create_mia("lira-online", references=task[2], num_models=4), task)
    rmia = run(create_mia("rmia-online", references=task[2], num_models=4), task)
    assert loss.tpr_at_fpr[0.01] <= 0.03, loss.tpr_at_fpr
    for online in (lira, rmia):
        assert online.tpr_at_fpr[0.01] >= max(0.05, 3 * loss.tpr_at_fpr[0.01]), (online.attack, online.tpr_at_fpr,
                                                                                loss.tpr_at_fpr)


def test_permuted_in_masks_destroy_online_lira_on_the_mixed_task(task):
    refs = task[2]
    gen = torch.Generator().manual_seed(0)
    masks = refs.in_masks[:, torch.randperm(refs.in_masks.shape[1], generator=gen)]
    broken = run(create_mia("lira-online", references=ReferenceModels(refs.models, refs.population, masks),
                            num_models=4), task)
    assert broken.tpr_at_fpr[0.01] <= 0.03 and broken.auc < 0.6, (broken.auc, broken.tpr_at_fpr)

