"""PGN and GRA against hand-written float64 loops of the papers' algorithms (one gradient per point, the same
uniform draws), their gradient counts, seeds and parameter errors."""

import math

import pytest
import torch

from modelsafe.adversarial import (
    DecayIndicator,
    GradientRelevance,
    PenalizedGradientNorm,
    create_attack,
)
from modelsafe.errors import ModelsafeError

from .reference import l1_normalised, loss_grad, project


def pgn_loop(model, x0, y, eps, steps, n, zeta, delta, seed):
    """Ge et al. 2023, Algorithm 1: per iteration N neighbours x' = x + U(-zeta eps, zeta eps), g' at x',
    x* = x' - alpha g'/mean|g'|, g* at x*, g = mean of (1 - delta) g' + delta g*; MI momentum, sign step."""
    gen, alpha = torch.Generator().manual_seed(seed), eps / steps
    x, momentum = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        noise = torch.empty((n, *x.shape), dtype=x.dtype).uniform_(-zeta * eps, zeta * eps, generator=gen)
        total = torch.zeros_like(x)
        for i in range(n):
            near = x + noise[i]
            g1 = loss_grad(model, near, y)
            g2 = loss_grad(model, near - alpha * l1_normalised(g1), y)
            total += (1 - delta) * g1 + delta * g2
        momentum = momentum + l1_normalised(total / n)
        x = project(x + alpha * momentum.sign(), x0, eps)
    return x


def gra_loop(model, x0, y, eps, steps, n, beta, eta, seed):
    """Zhu et al. 2023: g at x, gbar the mean over N neighbours x + U(-beta eps, beta eps), s = cos(g, gbar)
    per image, G = s g + (1 - s) gbar; momentum; decay indicator M (from 1/eta) times eta where the
    momentum's sign flips; step alpha M sign(momentum)."""
    gen, alpha = torch.Generator().manual_seed(seed), eps / steps
    x, momentum, m = x0.clone(), torch.zeros_like(x0), torch.full_like(x0, 1 / eta)
    for _ in range(steps):
        g = loss_grad(model, x, y)
        noise = torch.empty((n, *x.shape), dtype=x.dtype).uniform_(-beta * eps, beta * eps, generator=gen)
        gbar = sum(loss_grad(model, x + noise[i], y) for i in range(n)) / n
        s = torch.stack([torch.dot(a.flatten(), b.flatten()) / (a.norm() * b.norm()) for a, b in zip(g, gbar)])
        s = s.view(-1, 1, 1, 1)
        new = momentum + l1_normalised(s * g + (1 - s) * gbar)
        m = m * torch.where(new.sign() == momentum.sign(), 1.0, eta)
        momentum = new
        x = project(x + alpha * m * momentum.sign(), x0, eps)
    return x


def test_pgn_equals_the_papers_loop_in_float64(tiny_setup):
    model, x0, y = tiny_setup
    want = pgn_loop(model, x0, y, 0.1, 3, 4, 3.0, 0.5, seed=7)
    attack = create_attack("pgn", model, eps=0.1, steps=3, samples=4, chunk_size=5)  # look-ahead = alpha
    adv = attack(x0, y, seed=7)
    assert (adv - want).abs().max().item() < 1e-9
    assert (adv - x0).abs().max().item() > 0.05
    assert attack.last_compute.gradient_evaluations_per_image == 3 * 2 * 4
    fixed = create_attack("pgn", model, eps=0.1, steps=3, samples=4, pgn_step=0.1)(x0, y, seed=7)
    assert (fixed - adv).abs().max().item() > 1e-4  # a fixed step of 0.1 eps is not alpha = eps / 3


def test_gra_equals_the_papers_loop_in_float64(tiny_setup):
    model, x0, y = tiny_setup
    want = gra_loop(model, x0, y, 0.1, 3, 4, 3.5, 0.94, seed=4)
    adv = create_attack("gra", model, eps=0.1, steps=3, samples=4, chunk_size=5)(x0, y, seed=4)
    assert (adv - want).abs().max().item() < 1e-9
    no_decay = create_attack("gra", model, eps=0.1, steps=3, samples=4, eta=1.0)(x0, y, seed=4)
    assert (no_decay - adv).abs().max().item() > 1e-4  # the indicator changed some steps


def test_decay_indicator_by_hand():
    rule = DecayIndicator(eta=0.5)
    state = rule.init_state(torch.zeros(1, 1, 1, 3))
    assert torch.equal(rule.step_scale(state), torch.full((1, 1, 1, 3), 2.0))
    rule.update(torch.tensor([[[[1.0, -1.0, 0.0]]]]), state)         # signs (0,0,0) -> (+,-,0)
    assert rule.step_scale(state).flatten().tolist() == [1.0, 1.0, 2.0]
    rule.update(torch.tensor([[[[-6.0, -3.0, 3.0]]]]), state)        # momentum (1 - 2, -1 - 1, 0 + 1)
    assert rule.step_scale(state).flatten().tolist() == [0.5, 1.0, 1.0]


def test_gradient_relevance_combine_by_hand():
    g = torch.tensor([[[[1.0, 0.0]]]])
    others = torch.tensor([[[[[0.0, 2.0]]]], [[[[2.0, 2.0]]]]])     # mean (1, 2): cos = 1/sqrt(5)
    s = 1 / math.sqrt(5)
    got = GradientRelevance(samples=2).combine(torch.cat([g.unsqueeze(0), others]), {})
    assert torch.allclose(got, s * g + (1 - s) * torch.tensor([[[[1.0, 2.0]]]]))


@pytest.mark.parametrize("name,per_image", [("pgn", 400), ("gra", 210), ("pgn-fgrm", 400)])
def test_gradient_evaluations_at_the_paper_defaults(tiny_setup, name, per_image):
    model, x0, y = tiny_setup
    attack = create_attack(name, model, eps=0.1)
    attack(x0[:1], y[:1])
    assert attack.last_compute.gradient_evaluations_per_image == per_image
    assert attack.last_compute.forward_per_image == per_image + 1


@pytest.mark.parametrize("name", ["pgn", "gra"])
def test_seed_controls_the_neighbours(tiny_setup, name):
    model, x0, y = tiny_setup
    attack = create_attack(name, model, eps=0.1, steps=2, samples=3)
    assert torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=1))
    assert not torch.equal(attack(x0, y, seed=1), attack(x0, y, seed=2))


@pytest.mark.parametrize("make,match", [
    (lambda: PenalizedGradientNorm(samples=0), "PenalizedGradientNorm samples must be a positive integer"),
    (lambda: PenalizedGradientNorm(delta=1.5), "PenalizedGradientNorm delta must lie in"),
    (lambda: GradientRelevance(samples=-2), "GradientRelevance samples"),
    (lambda: GradientRelevance(beta=0), "GradientRelevance beta"),
    (lambda: DecayIndicator(eta=0.0), "DecayIndicator eta"),
])
def test_bad_parameters_name_the_part(make, match):
    with pytest.raises(ModelsafeError, match=match):
        make()


def test_flat_options_apply_only_to_their_parts(tiny_setup):
    model = tiny_setup[0]
    with pytest.raises(ModelsafeError, match="eta do not apply to 'mi-fgsm'"):
        create_attack("mi-fgsm", model, eta=0.9)
    with pytest.raises(ModelsafeError, match="delta do not apply to 'gra'"):
        create_attack("gra", model, delta=0.3)


def test_new_presets_are_registered_with_the_papers_defaults():
    from modelsafe.adversarial import describe_attacks, list_attacks

    assert {"pgn", "gra", "bsr", "sia", "pgn-fgrm", "gra-fgrm", "bsr-smi-fgrm", "sia-smi-fgrm"} <= set(list_attacks())
    rows = {r["name"]: r["spec"] for r in describe_attacks()}
    assert rows["pgn"]["estimator"] == {"kind": "PenalizedGradientNorm", "samples": 20, "beta": 3.0, "delta": 0.5,
                                        "step": None}
    assert rows["gra"]["estimator"] == {"kind": "GradientRelevance", "samples": 20, "beta": 3.5}
    assert rows["gra"]["update"] == {"kind": "DecayIndicator", "mu": 1.0, "nesterov": False, "eta": 0.94}
    assert rows["bsr"]["diversity"] == {"kind": "BlockShuffleRotation", "blocks": 2, "angle": 24.0, "copies": 20,
                                        "fill": 0.5}
    assert rows["sia"]["diversity"]["blocks"] == 3 and rows["sia"]["diversity"]["copies"] == 20
    assert rows["bsr-smi-fgrm"]["estimator"]["samples"] == 12 and rows["bsr-smi-fgrm"]["direction"]["kind"] == "RescaleStep"
    for name in ("pgn", "gra", "bsr", "sia"):
        assert rows[name]["steps"] == 10 and rows[name]["alpha"] == pytest.approx(16 / 255 / 10)
