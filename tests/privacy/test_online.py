"""The online-attacker API SafeCompress's min-max training uses: build, partial_fit, defence_term, score_model,
state_dict."""

import numpy as np
import pytest
import torch

from modelsafe.errors import ModelsafeError
from modelsafe.privacy import BlackBoxNNAttack, WhiteBoxAttack
from modelsafe.training import Callback, fit

from .conftest import CLASSES, synthetic, tabular_model


@pytest.mark.parametrize("cls", [BlackBoxNNAttack, WhiteBoxAttack])
def test_defence_term_is_differentiable_in_logits_only(memorised, cls):
    attacker = cls(seed=0).build(memorised.target, CLASSES)
    x, y = memorised.known_members.x[:16], memorised.known_members.y[:16]
    memorised.target.train()
    try:
        logits = memorised.target(x)
        term = attacker.defence_term(memorised.target, x, y, logits)
        assert memorised.target.training  # mode restored after the eval-mode gradient features
    finally:
        memorised.target.eval()
    assert term.dim() == 0 and term.item() < 0  # mean log h, h in (0, 1)
    term.backward()
    assert all(p.grad is None for p in attacker.net.parameters())
    assert all(p.requires_grad for p in attacker.net.parameters())  # unfrozen again
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in memorised.target.parameters())
    memorised.target.zero_grad(set_to_none=True)


def test_minimising_the_defence_term_lowers_membership_scores(memorised):
    attacker = BlackBoxNNAttack(seed=0, epochs=20).fit(memorised.target, memorised.known_members,
                                                       memorised.known_nonmembers)
    x, y = memorised.eval_members.x, memorised.eval_members.y
    with torch.no_grad():
        logits = memorised.target(x)
    logits.requires_grad_(True)
    before = attacker.defence_term(memorised.target, x, y, logits)
    (grad,) = torch.autograd.grad(before, logits)
    with torch.no_grad():
        after = attacker.defence_term(memorised.target, x, y, logits - 50.0 * grad)
    assert after < before


def test_partial_fit_learns_against_the_current_target(memorised):
    attacker = BlackBoxNNAttack(seed=0, batch_size=64).build(memorised.target, CLASSES)
    start = attacker.score_model(memorised.target, memorised.eval_members, memorised.eval_nonmembers)
    losses = [attacker.partial_fit(memorised.target, memorised.known_members, memorised.known_nonmembers, steps=10)
              for _ in range(8)]
    end = attacker.score_model(memorised.target, memorised.eval_members, memorised.eval_nonmembers)
    assert losses[-1] < losses[0]
    assert end["auc"] > 0.7 and end["auc"] > start["auc"]
    assert end["advantage"] == pytest.approx(2 * end["accuracy"] - 1)
    assert not memorised.target.training


def test_state_dict_round_trip(memorised):
    a = WhiteBoxAttack(seed=3).build(memorised.target, CLASSES)
    a.partial_fit(memorised.target, memorised.known_members, memorised.known_nonmembers, steps=3)
    b = WhiteBoxAttack(seed=99).build(memorised.target, CLASSES)
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a.score(memorised.target, memorised.eval_members),
                                  b.score(memorised.target, memorised.eval_members))
    a.partial_fit(memorised.target, memorised.known_members, memorised.known_nonmembers, steps=2)
    b.partial_fit(memorised.target, memorised.known_members, memorised.known_nonmembers, steps=2)
    np.testing.assert_array_equal(a.score(memorised.target, memorised.eval_members),
                                  b.score(memorised.target, memorised.eval_members))
    with pytest.raises(ModelsafeError, match="classes"):
        BlackBoxNNAttack().build(memorised.target, 3).load_state_dict(
            BlackBoxNNAttack().build(memorised.target, CLASSES).state_dict())


def test_min_max_training_loop_with_fit_callbacks():
    """SafeCompress-style adversarial regularisation: attacker steps between defender steps, defender loss
    CE + λ·log h, wired through modelsafe.training.fit callbacks."""
    members, reference = synthetic(300, seed=5), synthetic(300, seed=6)

    def run(lam: float):
        target = tabular_model(1)
        attacker = BlackBoxNNAttack(seed=0, batch_size=32).build(target, CLASSES)
        calls = []

        class MinMax(Callback):
            def loss(self, state, inputs, labels, logits, loss):
                return loss + lam * attacker.defence_term(state.model, inputs, labels, logits)

            def after_optimizer_step(self, state):
                calls.append(attacker.partial_fit(state.model, members, reference, steps=1))

        history = fit(target, members, epochs=3, lr=0.05, batch_size=64, callbacks=[MinMax()], progress=False,
                      device="cpu")
        return target, history, calls

    defended, history, calls = run(0.5)
    plain, _, _ = run(0.0)
    assert len(calls) == 3 * 5 and all(np.isfinite(calls)) and np.isfinite(history[-1]["train_loss"])
    # the defence term reached the target's gradients: same seeds, different weights
    assert not torch.equal(defended.classifier[-1].weight, plain.classifier[-1].weight)


def test_online_api_needs_a_network(memorised):
    with pytest.raises(ModelsafeError, match="build"):
        BlackBoxNNAttack().partial_fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
