"""Attacks at an equal budget of gradient evaluations per image: the rule scales sample counts (or T) and the
library's own count of the planned attack equals the budget where the rule can reach it."""

import pytest
import torch
from torch import nn

from modelsafe.adversarial import create_attack
from modelsafe.adversarial.budget import counted_evaluations, create_attack_at_budget, plan_budget
from modelsafe.errors import ModelsafeError

SHAPE = (1, 8, 8)


def test_smi_fgrm_at_its_own_cost_is_unchanged_and_mi_fgsm_gets_more_iterations():
    smi = plan_budget("smi-fgrm", 130, SHAPE, eps=0.1)
    assert smi.counts == {"estimator.samples": 12} and smi.steps == 10 and smi.evaluations == 130
    assert smi.spec == create_attack("smi-fgrm", nn.Linear(1, 1), eps=0.1).spec
    mi = plan_budget("mi-fgsm", 130, SHAPE, eps=0.1)
    assert mi.steps == 130 and mi.counts == {} and mi.evaluations == 130
    assert mi.spec.step_size == pytest.approx(0.1 / 130)


@pytest.mark.parametrize("name, counts, evaluations", [
    ("pgn", {"estimator.samples": 6}, 120),            # 2N per iteration: N = 6 (120) and 7 (140) tie -> cheaper
    ("bsr", {"diversity.copies": 13}, 130),
    ("si-ni-fgsm", {"scales.copies": 13}, 130),
    ("bsr-smi-fgrm", {"estimator.samples": 2, "diversity.copies": 4}, 120),  # (N + 1) x copies, one factor
])
def test_sample_counts_scale_by_one_factor_to_the_closest_cost(name, counts, evaluations):
    plan = plan_budget(name, 130, SHAPE, eps=0.1)
    assert plan.steps == 10 and plan.counts == counts and plan.evaluations == evaluations


def test_the_planned_attack_costs_what_was_counted_on_a_real_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 3))
    attack = create_attack_at_budget("bsr-smi-fgrm", model, 130, SHAPE, eps=0.1)
    attack(torch.rand(3, *SHAPE))
    assert attack.last_compute.gradient_evaluations_per_image == attack.budget_plan.evaluations == 120
    assert counted_evaluations(create_attack("pgn", model, eps=0.1).spec, SHAPE) == 400


@pytest.mark.parametrize("name, budget, message", [
    ("pgn", 5, "budget 5 is below the cheapest 'pgn' at T=10"),
    ("mi-fgsm", 0, "budget must be a positive integer"),
    ("fgsm", 130, "single-step attack"),
    ("nope", 130, "unknown attack"),
])
def test_budgets_an_attack_cannot_meet_are_refused(name, budget, message):
    with pytest.raises(ModelsafeError, match=message):
        plan_budget(name, budget, SHAPE)
