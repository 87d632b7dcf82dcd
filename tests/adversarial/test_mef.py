"""MEF against a hand-written float64 loop of its update equations (one gradient per neighbour, the same
uniform draws), its gradient count and budget plan, seeds and parameter errors."""

import pytest
import torch

from modelsafe.adversarial import MaximinExpectedFlatness, create_attack, describe_attacks
from modelsafe.adversarial.budget import plan_budget
from modelsafe.errors import ModelsafeError

from .reference import l1_normalised, loss_grad, project


def mef_loop(model, x0, y, eps, steps, n, gamma, kesai, inner, mu, seed):
    """Qiu et al.: per iteration N neighbours x_i = x + U(-gamma eps, gamma eps) + kesai eps p_i, g_i at x_i,
    p_i <- g_i/mean|g_i| - inner p_i (p_i = 0 at the start), G = mean g_i; outer momentum m <- mu m + G/mean|G|;
    step alpha sign(m)."""
    gen, alpha = torch.Generator().manual_seed(seed), eps / steps
    x, momentum = x0.clone(), torch.zeros_like(x0)
    inversion = [torch.zeros_like(x0) for _ in range(n)]
    for _ in range(steps):
        noise = torch.empty((n, *x.shape), dtype=x.dtype).uniform_(-gamma * eps, gamma * eps, generator=gen)
        grads = [loss_grad(model, x + noise[i] + kesai * eps * inversion[i], y) for i in range(n)]
        inversion = [l1_normalised(g) - inner * p for g, p in zip(grads, inversion)]
        momentum = mu * momentum + l1_normalised(sum(grads) / n)
        x = project(x + alpha * momentum.sign(), x0, eps)
    return x


def test_mef_equals_the_loop_in_float64(tiny_setup):
    model, x0, y = tiny_setup
    want = mef_loop(model, x0, y, 0.1, 3, 4, 2.0, 0.15, 0.9, 0.5, seed=3)
    attack = create_attack("mef", model, eps=0.1, steps=3, samples=4, chunk_size=5)
    adv = attack(x0, y, seed=3)
    assert (adv - want).abs().max().item() < 1e-9
    assert (adv - x0).abs().max().item() > 0.05
    assert attack.last_compute.gradient_evaluations_per_image == 3 * 4
    other = mef_loop(model, x0, y, 0.1, 3, 4, 1.0, 0.5, 0.3, 0.5, seed=3)
    adv = create_attack("mef", model, eps=0.1, steps=3, samples=4, beta=1.0, xi=0.5, inner_decay=0.3)(x0, y, seed=3)
    assert (adv - other).abs().max().item() < 1e-9


def test_the_inversion_buffers_move_the_neighbours(tiny_setup):
    model, x0, y = tiny_setup
    base = create_attack("mef", model, eps=0.1, steps=3, samples=4)(x0, y, seed=3)
    no_shift = create_attack("mef", model, eps=0.1, steps=3, samples=4, xi=0.0)(x0, y, seed=3)
    assert (base - no_shift).abs().max().item() > 1e-4


@pytest.mark.parametrize("name", ["mef", "mef-fgrm"])
def test_gradient_evaluations_at_the_defaults(tiny_setup, name):
    model, x0, y = tiny_setup
    attack = create_attack(name, model, eps=0.1)
    attack(x0[:1], y[:1])
    assert attack.last_compute.gradient_evaluations_per_image == 200  # T = 10 iterations x N = 20
    assert attack.last_compute.forward_per_image == 201


def test_budget_plan_scales_the_neighbours():
    plan = plan_budget("mef", 130, (1, 8, 8))
    assert plan.steps == 10 and plan.counts == {"estimator.samples": 13} and plan.evaluations == 130
    assert plan.spec.update.mu == 0.5 and plan.spec.estimator.beta == 2.0


def test_seed_controls_the_neighbours(tiny_setup):
    model, x0, y = tiny_setup
    attack = create_attack("mef", model, eps=0.1, steps=2, samples=3)
    assert torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=1))
    assert not torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=2))


@pytest.mark.parametrize("kwargs,match", [
    ({"samples": 0}, "MaximinExpectedFlatness samples must be a positive integer"),
    ({"beta": 0.0}, "MaximinExpectedFlatness beta must be a finite number > 0"),
    ({"xi": -0.1}, "MaximinExpectedFlatness xi must be a finite number >= 0"),
    ({"inner_decay": float("nan")}, "MaximinExpectedFlatness inner_decay"),
])
def test_bad_parameters_name_the_part(kwargs, match):
    with pytest.raises(ModelsafeError, match=match):
        MaximinExpectedFlatness(**kwargs)


def test_preset_rows_and_flat_options(tiny_setup):
    rows = {r["name"]: r["spec"] for r in describe_attacks()}
    assert rows["mef"]["estimator"] == {"kind": "MaximinExpectedFlatness", "samples": 20, "beta": 2.0, "xi": 0.15,
                                        "inner_decay": 0.9}
    assert rows["mef"]["update"] == {"kind": "Momentum", "mu": 0.5, "nesterov": False}
    assert rows["mef"]["steps"] == 10 and rows["mef"]["alpha"] == pytest.approx(16 / 255 / 10)
    assert rows["mef-fgrm"]["direction"]["kind"] == "RescaleStep"
    with pytest.raises(ModelsafeError, match="xi do not apply to 'pgn'"):
        create_attack("pgn", tiny_setup[0], xi=0.2)
