"""Safety tests: simulated attacks that score how unsafe a (candidate) model is.

A :class:`SafetyTest` keeps a simulated attacker *online* across a whole compression run (as in the TSE code):
``prepare`` builds it for the target, ``refresh`` trains it further against the current model (every
``update_interval`` steps), ``score`` measures a candidate model on held-out attacker-known data, ``attacker_step``
trains it one step during the min-max phase and ``defence_loss`` is the term the defender adds to its loss.

Tests only ever see :class:`SafetyData`, built from the split's attacker-known sets
(``attack_known_members`` / ``attack_reference``). The final evaluation sets (``eval_members`` /
``eval_nonmembers``) never reach a safety test, so a final audit on them stays independent.

Built-in tests: ``bmia`` (black-box learned MIA, Nasr architecture), ``wmia`` (white-box MIA: logits, loss,
label and last-layer gradients), ``loss`` (the training-free true-label confidence signal) and ``adversarial``
(white-box adversarial-example success rate: the plug-in that lets transfer/evasion attacks drive
compression). The risk a test reports is in [-1, 1]; higher is less safe (for membership tests one of the
statistics of :mod:`~modelsafe.compress.resolution` on the held-out pair).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from modelsafe._checks import check_fraction, check_positive, check_positive_int
from modelsafe.compress.resolution import all_risks, check_risk
from modelsafe.data.info import Dataset, TensorData
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.metrics import best_threshold
from modelsafe.registry import Registry
from modelsafe.utils import derive_seed, eval_mode, make_generator, model_device


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
    def from_split(cls, dataset: Dataset, split: MembershipSplit, holdout_fraction: float = 0.2,
                   seed: int = 0) -> SafetyData:
        """Split ``attack_known_members`` and ``attack_reference`` into attacker-training and holdout parts."""
        check_fraction("holdout_fraction", holdout_fraction, closed_low=False, closed_high=False)
        pool = dataset.pool()
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


def _calibration_sample(data: TensorData, limit: int, seed: int) -> TensorData:
    """At most ``limit`` samples of ``data``, the same ones every time."""
    if len(data) <= limit:
        return data
    return data.subset(torch.randperm(len(data), generator=make_generator(seed))[:limit])


class MembershipSafetyTest(SafetyTest):
    """A safety test that scores each held-out attacker-known sample for membership.

    Subclasses give :meth:`sample_scores` (membership scores in [0, 1], higher = more likely member) and may
    train an attacker in :meth:`refresh`. The risk is one statistic of :mod:`~modelsafe.compress.resolution`
    (``advantage`` at a threshold calibrated on the attacker's own training data at every refresh, ``auc`` or
    ``gap``); :meth:`score` reports all three with the risk, so every candidate's log row carries them."""

    risk: str = "advantage"
    calibration_samples: int = 500

    def __init__(self) -> None:
        self.data: SafetyData | None = None
        self.threshold = 0.5

    @abstractmethod
    def sample_scores(self, model: nn.Module, members: TensorData,
                      nonmembers: TensorData) -> tuple[np.ndarray, np.ndarray]:
        """Membership scores (n1,), (n0,) in [0, 1] of ``model`` on two sets of samples."""

    def holdout_scores(self, model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Scores on the held-out attacker-known members and non-members (what candidates are judged on)."""
        return self.sample_scores(model, self.data.holdout_members, self.data.holdout_nonmembers)

    def calibrate(self, model: nn.Module) -> None:
        """Set the decision threshold that maximises balanced accuracy on (a fixed sample of) the attacker's
        training members and non-members, never on the held-out pair."""
        limit, seed = self.calibration_samples, derive_seed(self.seed, "calibration")
        m, u = self.sample_scores(model, _calibration_sample(self.data.attacker_members, limit, seed),
                                  _calibration_sample(self.data.attacker_nonmembers, limit, seed + 1))
        threshold = best_threshold(np.r_[m, u], np.r_[np.ones(m.size), np.zeros(u.size)])
        self.threshold = float(np.clip(threshold, 0.0, 1.0 + 1e-9))

    def figures(self, members: np.ndarray, nonmembers: np.ndarray) -> dict[str, float]:
        """The risk and its ingredients on held-out scores (from :meth:`holdout_scores`): ``advantage``,
        ``auc`` (the area itself, in [0, 1]), ``gap`` and the ``threshold`` used."""
        figures = all_risks(members, nonmembers, self.threshold)
        return {"risk": figures[self.risk], "advantage": figures["advantage"], "auc": 0.5 * (figures["auc"] + 1.0),
                "gap": figures["gap"], "threshold": self.threshold}

    def score(self, model: nn.Module) -> dict[str, float]:
        return self.figures(*self.holdout_scores(model))

    def state_dict(self) -> dict:
        return {"threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        self.threshold = float(state["threshold"])


class MIASafetyTest(MembershipSafetyTest):
    """A learned membership-inference attack (``blackbox-nn`` or ``whitebox``) kept online.

    ``refresh_steps``: attacker training steps against the current model at every refresh (SafeCompress
    refreshes every ``update_interval`` optimizer steps, whether or not it selects); ``attacker_steps``: steps
    per defender step in the min-max phase (the TSE code trains attacker and defender on two batches each,
    i.e. 1:1). ``risk``: see :class:`MembershipSafetyTest`; the scores are the attacker's membership
    probabilities. ``attack_options`` go to :func:`modelsafe.privacy.create_mia` (e.g. ``batch_size``, ``lr``,
    ``prediction``)."""

    def __init__(self, attack: str, *, refresh_steps: int = 100, attacker_steps: int = 1, risk: str = "advantage",
                 seed: int = 0, **attack_options):
        from modelsafe.privacy import create_mia

        super().__init__()
        self.attack_name = attack
        self.name = {"blackbox-nn": "bmia", "whitebox": "wmia"}.get(attack, attack)
        self.refresh_steps = check_positive_int("refresh_steps", refresh_steps)
        self.attacker_steps = check_positive_int("attacker_steps", attacker_steps)
        self.risk = check_risk(risk)
        self.seed = seed
        self.attack = create_mia(attack, seed=derive_seed(seed, "safety", attack), **attack_options)
        if not hasattr(self.attack, "partial_fit"):
            raise ModelsafeError(f"MIA {attack!r} cannot be trained online; use 'blackbox-nn' or 'whitebox'")
        self.refreshes = 0

    def prepare(self, model: nn.Module, data: SafetyData) -> None:
        self.data = data
        self.attack.build(model, data.num_classes)

    def _train(self, model: nn.Module, steps: int) -> None:
        self.attack.partial_fit(model, self.data.attacker_members, self.data.attacker_nonmembers, steps=steps)

    def refresh(self, model: nn.Module) -> None:
        self._train(model, self.refresh_steps)
        self.refreshes += 1
        self.calibrate(model)

    def attacker_step(self, model: nn.Module) -> None:
        self._train(model, self.attacker_steps)

    def sample_scores(self, model, members, nonmembers) -> tuple[np.ndarray, np.ndarray]:
        return (1.0 / (1.0 + np.exp(-self.attack.score(model, members))),
                1.0 / (1.0 + np.exp(-self.attack.score(model, nonmembers))))

    def defence_loss(self, model, inputs, labels, logits) -> torch.Tensor:
        return self.attack.defence_term(model, inputs, labels, logits)

    def state_dict(self) -> dict:
        return {"attack": self.attack.state_dict(), "threshold": self.threshold, "refreshes": self.refreshes}

    def load_state_dict(self, state: dict) -> None:
        self.attack.load_state_dict(state["attack"])
        self.threshold, self.refreshes = float(state["threshold"]), int(state["refreshes"])


class LossSafetyTest(MembershipSafetyTest):
    """The training-free loss signal (Yeom et al. 2018) as a safety test: a sample's score is the model's
    probability of its true label, exp(−cross-entropy), so ``auc`` is the loss-threshold attack's 2·AUC − 1
    and ``gap`` the member/non-member confidence gap. It trains nothing and offers no defence term; a refresh
    re-calibrates its threshold. Used beside a learned attacker it makes the selection answer to the
    membership signal itself, not only to one attack network."""

    name = "loss"

    def __init__(self, *, risk: str = "gap", seed: int = 0, batch_size: int = 512):
        super().__init__()
        self.risk = check_risk(risk)
        self.seed = seed
        self.batch_size = check_positive_int("batch_size", batch_size)

    def prepare(self, model: nn.Module, data: SafetyData) -> None:
        self.data = data

    def refresh(self, model: nn.Module) -> None:
        self.calibrate(model)

    def sample_scores(self, model, members, nonmembers) -> tuple[np.ndarray, np.ndarray]:
        return _true_label_probability(model, members, self.batch_size), _true_label_probability(
            model, nonmembers, self.batch_size)


@torch.no_grad()
def _true_label_probability(model: nn.Module, data: TensorData, batch_size: int) -> np.ndarray:
    out = []
    with eval_mode(model):
        for x, y in data.batches(batch_size, device=model_device(model)):
            out.append(torch.softmax(model(x).double(), dim=1).gather(1, y[:, None]).squeeze(1).cpu())
    return torch.cat(out).numpy()


class AdversarialSafetyTest(SafetyTest):
    """White-box adversarial-example risk: the success rate of an L∞ attack from
    :mod:`modelsafe.adversarial` (default ``i-fgsm``, ε = 8/255, 5 steps) on ``samples`` held-out images the
    model classifies correctly. Lets evasion attacks drive compression. Images only."""

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

        device = model_device(model)
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


SAFETY_TESTS: Registry[Callable[..., SafetyTest]] = Registry("safety test")
SAFETY_TESTS.register("bmia", lambda **kw: MIASafetyTest("blackbox-nn", **kw))
SAFETY_TESTS.register("wmia", lambda **kw: MIASafetyTest("whitebox", **kw))
SAFETY_TESTS.register("loss", LossSafetyTest)
SAFETY_TESTS.register("adversarial", AdversarialSafetyTest)


def list_safety_tests(pattern: str | None = None) -> list[str]:
    """Safety test names, sorted; those matching the shell-style ``pattern`` when given."""
    return SAFETY_TESTS.names(pattern)


def create_safety_test(name: str, **options) -> SafetyTest:
    """A safety test by name: ``bmia``, ``wmia``, ``loss`` or ``adversarial``."""
    return SAFETY_TESTS.get(name)(**options)


def create_safety_tests(names: Sequence[str], seed: int = 0, **options) -> list[SafetyTest]:
    if not names:
        raise ModelsafeError("at least one safety test is needed")
    if len(set(names)) != len(names):
        raise ModelsafeError(f"safety tests are repeated: {list(names)}")
    return [create_safety_test(n, seed=seed, **options.get(n, {})) for n in names]
