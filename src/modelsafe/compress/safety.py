"""Safety tests: simulated attacks that score how unsafe a (candidate) model is.

A :class:`SafetyTest` keeps a simulated attacker *online* across a whole compression run (papers.md A4.7):
``prepare`` builds it for the target, ``refresh`` trains it further against the current model (before each
mask selection), ``score`` measures a candidate model on held-out attacker-known data, ``attacker_step``
trains it one step during the min-max phase and ``defence_loss`` is the term the defender adds to its loss.

Tests only ever see :class:`SafetyData`, built from the split's attacker-known sets
(``attack_known_members`` / ``attack_reference``). The final evaluation sets (``eval_members`` /
``eval_nonmembers``) never reach a safety test, so a final audit on them stays independent.

Built-in tests: ``bmia`` (black-box learned MIA, Nasr architecture), ``wmia`` (white-box MIA: logits, loss,
label and last-layer gradients) and ``adversarial`` (white-box adversarial-example success rate: the plug-in
that lets transfer/evasion attacks drive compression). The risk a test reports is in [-1, 1]; higher is less
safe (for MIAs it is the attack advantage 2·accuracy − 1 on the held-out pair).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from modelsafe._checks import check_fraction, check_positive, check_positive_int
from modelsafe.data.info import Dataset, TensorData
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.utils import derive_seed, make_generator


@dataclass
class SafetyData:
    """What safety tests may use. ``attacker_*``: the simulated attacker trains on these; ``holdout_*``:
    candidates are scored on these (disjoint from the attacker's training data). All four come from the
    split's attacker-known sets."""

    attacker_members: TensorData
    attacker_nonmembers: TensorData
    holdout_members: TensorData
    holdout_nonmembers: TensorData
    num_classes: int

    @classmethod
    def from_split(cls, dataset: Dataset, split: MembershipSplit, holdout_fraction: float = 0.2, seed: int = 0,
                   pool: TensorData | None = None) -> SafetyData:
        """Split ``attack_known_members`` and ``attack_reference`` into attacker-training and holdout parts."""
        check_fraction("holdout_fraction", holdout_fraction, closed_low=False, closed_high=False)
        pool = pool if pool is not None else dataset.pool()
        gen = make_generator(derive_seed(seed, "safety-holdout"))
        parts = []
        for name in ("attack_known_members", "attack_reference"):
            idx = split[name][torch.randperm(split[name].numel(), generator=gen)]
            n_hold = int(round(holdout_fraction * idx.numel()))
            if n_hold < 1 or idx.numel() - n_hold < 1:
                raise ModelsafeError(f"split set {name!r} has {idx.numel()} samples: too few to hold out "
                                     f"{holdout_fraction:.0%} for safety scoring")
            parts.append((pool.subset(idx[n_hold:]), pool.subset(idx[:n_hold])))
        (train_m, hold_m), (train_u, hold_u) = parts
        return cls(train_m, train_u, hold_m, hold_u, dataset.info.num_classes)


class SafetyTest(ABC):
    """A simulated attack used as a safety test. Subclasses implement :meth:`prepare` and :meth:`score`;
    the online-attacker hooks default to doing nothing (a test without an attacker to train)."""

    name: str = ""

    @abstractmethod
    def prepare(self, model: nn.Module, data: SafetyData) -> None:
        """Build the simulated attacker for ``model`` (called once, at the start of training)."""

    @abstractmethod
    def score(self, model: nn.Module) -> dict[str, float]:
        """Figures for ``model``; must include ``risk`` (higher = less safe)."""

    def refresh(self, model: nn.Module) -> None:
        """Train the simulated attacker further against the current ``model``."""

    def attacker_step(self, model: nn.Module) -> None:
        """One online training step of the attacker (min-max phase)."""

    def defence_loss(self, model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                     logits: torch.Tensor) -> torch.Tensor | None:
        """The defender's extra loss on a training batch (None: this test offers no defence)."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        del state


# How a membership attack's figures on the held-out pair become a risk in [-1, 1].
RISKS: dict[str, Callable[[dict], float]] = {
    "advantage": lambda figures: figures["advantage"],
    "auc": lambda figures: 2.0 * figures["auc"] - 1.0,
}


def check_risk(name: str) -> str:
    if name not in RISKS:
        raise UnknownNameError("safety-test risk", name, list(RISKS))
    return name


class MIASafetyTest(SafetyTest):
    """A learned membership-inference attack (``blackbox-nn`` or ``whitebox``) kept online.

    ``refresh_steps``: attacker training steps against the current model before each selection;
    ``attacker_steps``: steps per defender step in the min-max phase (the TSE code trains attacker and
    defender on two batches each, i.e. 1:1). ``risk``: ``"advantage"`` (2·accuracy − 1 at the attacker's
    threshold, the papers' attack accuracy) or ``"auc"`` (2·AUC − 1: threshold-free, so less noisy on a small
    held-out set; a modelsafe option). ``attack_options`` go to :func:`modelsafe.privacy.create_mia`
    (e.g. ``batch_size``, ``lr``, ``prediction``)."""

    def __init__(self, attack: str, *, refresh_steps: int = 100, attacker_steps: int = 1, risk: str = "advantage",
                 seed: int = 0, **attack_options):
        from modelsafe.privacy import create_mia

        self.attack_name = attack
        self.name = {"blackbox-nn": "bmia", "whitebox": "wmia"}.get(attack, attack)
        self.refresh_steps = check_positive_int("refresh_steps", refresh_steps)
        self.attacker_steps = check_positive_int("attacker_steps", attacker_steps)
        self.risk = check_risk(risk)
        self.attack = create_mia(attack, seed=derive_seed(seed, "safety", attack), **attack_options)
        if not hasattr(self.attack, "partial_fit"):
            raise ModelsafeError(f"MIA {attack!r} cannot be trained online; use 'blackbox-nn' or 'whitebox'")
        self.data: SafetyData | None = None

    def prepare(self, model: nn.Module, data: SafetyData) -> None:
        self.data = data
        self.attack.build(model, data.num_classes)

    def _train(self, model: nn.Module, steps: int) -> None:
        self.attack.partial_fit(model, self.data.attacker_members, self.data.attacker_nonmembers, steps=steps)

    def refresh(self, model: nn.Module) -> None:
        self._train(model, self.refresh_steps)

    def attacker_step(self, model: nn.Module) -> None:
        self._train(model, self.attacker_steps)

    def score(self, model: nn.Module) -> dict[str, float]:
        figures = self.attack.score_model(model, self.data.holdout_members, self.data.holdout_nonmembers)
        return {"risk": RISKS[self.risk](figures), **figures}

    def defence_loss(self, model, inputs, labels, logits) -> torch.Tensor:
        return self.attack.defence_term(model, inputs, labels, logits)

    def state_dict(self) -> dict:
        return self.attack.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.attack.load_state_dict(state)


class AdversarialSafetyTest(SafetyTest):
    """White-box adversarial-example risk: the success rate of an L∞ attack from
    :mod:`modelsafe.adversarial` (default ``i-fgsm``, ε = 8/255, 5 steps) on ``samples`` held-out images the
    model classifies correctly. Lets evasion attacks drive compression (papers.md A11). Images only."""

    name = "adversarial"

    def __init__(self, attack: str = "i-fgsm", *, eps: float = 8 / 255, steps: int = 5, samples: int = 256,
                 seed: int = 0, **attack_options):
        self.attack_name = attack
        self.eps = check_positive("eps", eps)
        self.steps = check_positive_int("steps", steps)
        self.samples = check_positive_int("samples", samples)
        self.seed = seed
        self.attack_options = attack_options
        self.images: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def prepare(self, model: nn.Module, data: SafetyData) -> None:
        pool = TensorData(torch.cat([data.holdout_members.x, data.holdout_nonmembers.x]),
                          torch.cat([data.holdout_members.y, data.holdout_nonmembers.y]))
        if pool.x.dim() != 4:
            raise ModelsafeError("the 'adversarial' safety test needs image data")
        idx = torch.randperm(len(pool), generator=make_generator(derive_seed(self.seed, "adv-safety")))
        chosen = pool.subset(idx[:self.samples])
        self.images, self.labels = chosen.features(), chosen.y

    def score(self, model: nn.Module) -> dict[str, float]:
        from modelsafe.adversarial import create_attack

        device = next(model.parameters()).device
        x, y = self.images.to(device), self.labels.to(device)
        with torch.no_grad():
            correct = model.eval()(x).argmax(1) == y
        if not bool(correct.any()):
            return {"risk": 1.0, "success_rate": 1.0, "clean_accuracy": 0.0}
        attack = create_attack(self.attack_name, model, eps=self.eps, steps=self.steps, seed=self.seed,
                               **self.attack_options)
        adv = attack(x[correct], y[correct])
        with torch.no_grad():
            fooled = float((model(adv).argmax(1) != y[correct]).float().mean())
        # risk: share of held-out images the attack turns into mistakes (clean mistakes count as lost too)
        clean = float(correct.float().mean())
        return {"risk": 1.0 - clean * (1.0 - fooled), "success_rate": fooled, "clean_accuracy": clean}


SAFETY_TESTS: dict[str, Callable[..., SafetyTest]] = {
    "bmia": lambda **kw: MIASafetyTest("blackbox-nn", **kw),
    "wmia": lambda **kw: MIASafetyTest("whitebox", **kw),
    "adversarial": AdversarialSafetyTest,
}


def create_safety_test(name: str, **options) -> SafetyTest:
    """A safety test by name: ``bmia``, ``wmia`` or ``adversarial``."""
    if name not in SAFETY_TESTS:
        raise UnknownNameError("safety test", name, list(SAFETY_TESTS))
    return SAFETY_TESTS[name](**options)


def create_safety_tests(names: Sequence[str], seed: int = 0, **options) -> list[SafetyTest]:
    if not names:
        raise ModelsafeError("at least one safety test is needed")
    if len(set(names)) != len(names):
        raise ModelsafeError(f"safety tests are repeated: {list(names)}")
    return [create_safety_test(n, seed=seed, **options.get(n, {})) for n in names]
