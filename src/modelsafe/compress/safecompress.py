"""SafeCompress: test-driven safe compression (Zhu, Wang, Han et al., ASE 2022; TSE 2024).

A dense model becomes a sparse one by dynamic sparse training (ERK initial masks, scheduled prune → grow),
driven explicitly by :class:`SafeCompress`:

1. every ``update_interval`` optimizer steps, each safety test is refreshed: its online attacker trains
   ``refresh_steps`` more steps against the current model and its decision threshold is re-calibrated on the
   attacker's own training data (configurations without selection are refreshed the same way);
2. at each scheduled mask update one candidate mask is proposed per candidate strategy
   (:meth:`DynamicSparsity.propose`; the live model and optimizer are untouched);
3. each candidate is copied and fine-tuned for ``probe_steps`` steps with the run's own optimizer, on batches
   common to all candidates of the update (:mod:`~modelsafe.compress.probe`), then scored on common samples:
   task accuracy on a validation sample, and risk from every safety test on held-out attacker-known data;
4. the candidate with the best objective (:class:`~modelsafe.compress.selection.Objective`) is applied; the
   log keeps every candidate's scores, the most accurate candidate, whether the choice differs from it, and
   the paired-bootstrap resolution of each risk statistic (:mod:`~modelsafe.compress.resolution`).

From ``minmax_start`` (fraction of training) on, the defender minimises CE + λ·Σ_j log h_j (Nasr et al.'s
adversarial regularisation against the same online attackers), with ``attacker_steps`` attacker updates per
defender step. BMIA, WMIA and MMIA-SafeCompress are configurations of this one trainer (:data:`CONFIGS`), as
are the baselines and ablations that share everything but one mechanism.

Departures from the papers, all options:

* Candidates: the papers do not specify their "strategies". Default: four candidates, magnitude pruning with
  RigL-gradient, momentum and two random growths; a strategy may carry a drop-fraction multiplier
  (``"magnitude/gradient@x2"``).
* Selection: accuracy − w·max risk with w = 1 on the attack advantage, i.e. accuracy − 2·(MIA accuracy) + 1:
  the attack weighs twice as much as in accuracy − MIA accuracy, which is ``objective_weight=0.5``.
* Model selection data: a validation split of the training distribution, never the test set (the official
  code validates on the test set).
* The official code's recipe is the ``safecompress-official`` configuration.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modelsafe import distributed
from modelsafe._checks import (
    check_choice,
    check_density,
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_positive_int,
)
from modelsafe.compress.methods import mask_seed
from modelsafe.compress.probe import probe, probe_batches
from modelsafe.compress.resolution import RISK_STATISTICS, PairedBootstrap, check_risk
from modelsafe.compress.safety import (
    SAFETY_TESTS,
    MembershipSafetyTest,
    SafetyData,
    SafetyTest,
    create_safety_tests,
)
from modelsafe.compress.selection import Objective, select
from modelsafe.data.info import Dataset, TensorData
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.sparse.engine import Candidate, DynamicSparsity
from modelsafe.sparse.layers import LayerSelection
from modelsafe.sparse.rules import Strategy
from modelsafe.sparse.schedule import UpdateSchedule
from modelsafe.storage.io import write_json
from modelsafe.training import Callback, TrainConfig, TrainState, evaluate, fit
from modelsafe.utils import derive_seed, make_generator


@dataclass(frozen=True)
class CandidateSpec:
    """A candidate strategy written ``"prune/grow[#seed][@xM][~L]"``: prune and grow rules, a seed for random
    choices, a multiplier M of the scheduled drop fraction (capped at 1) and a probe defence weight L (the
    candidate's probe adds L times the safety tests' min-max term; only with ``keep_probe``)."""

    strategy: Strategy
    multiplier: float = 1.0
    defence: float = 0.0

    @classmethod
    def parse(cls, text: str) -> CandidateSpec:
        body, tilde, weight = text.partition("~")
        body, _, mult = body.partition("@x")
        body, _, seed = body.partition("#")
        try:
            multiplier = float(mult) if mult else 1.0
            seed_value = int(seed) if seed else 0
            defence = float(weight) if tilde else 0.0
        except ValueError:
            raise ModelsafeError(f"bad candidate strategy {text!r}; expected 'prune/grow[#seed][@xM][~L]'") from None
        if multiplier <= 0:
            raise ModelsafeError(f"candidate {text!r}: the drop-fraction multiplier must be > 0")
        if not math.isfinite(defence) or defence < 0:
            raise ModelsafeError(f"candidate {text!r}: the probe defence weight L must be a finite number >= 0")
        base = Strategy.coerce(body)
        return cls(Strategy(base.prune, base.grow, seed_value), multiplier, defence)

    def at(self, fraction: float) -> Strategy:
        if self.multiplier == 1.0:
            return self.strategy
        return replace(self.strategy, drop_fraction=min(1.0, fraction * self.multiplier))


@dataclass(frozen=True)
class SafeCompressConfig:
    """Settings of one SafeCompress run (see the module docstring for each stage).

    ``tests``: safety tests (``bmia``, ``wmia``, ``loss``, ``adversarial``); ``select=False`` applies the single
    candidate without scoring (plain DST / the official code). ``update_interval``: optimizer steps between
    mask updates and between attacker refreshes; ``update_end``: fraction of training after which masks are
    frozen. ``probe_steps``: fine-tuning steps of each candidate copy before scoring (common batches, the
    run's optimizer). ``objective_weight``: w of accuracy − w·risk (0 = select by accuracy only).
    ``minmax_start`` / ``minmax_lambda``: the adversarial-regularisation phase (``minmax=False`` turns it
    off). ``risk``: how membership tests turn their held-out scores into a risk (``advantage``, ``auc``,
    ``gap``; :mod:`~modelsafe.compress.resolution`). ``holdout_fraction``: share of the attacker-known sets
    kept out of attacker training to score candidates on. ``prediction``: what the black-box attacker sees
    (``probabilities`` or the official code's ``logits``). ``bootstrap_rounds``: paired-bootstrap resamples
    behind the logged standard errors. ``gap_samples``: attacker-training samples per set behind the
    ``gap_grad`` signal of privacy-aware candidates (``"magnitude-gap/gradient"``). ``keep_probe``: the chosen
    candidate's probed weights and optimizer state replace the live ones and its ``probe_steps`` steps replace
    as many of the run's own (the next batches are passed over), so the run takes as many optimizer steps as
    one without probes; candidates may then also differ by their probe's defence weight (``"~L"``). Off, the
    probes only inform the choice and the live run continues from the chosen mask."""

    density: float = 0.05
    tests: tuple[str, ...] = ("bmia",)
    candidates: tuple[str, ...] = ("magnitude/gradient", "magnitude/momentum", "magnitude/random",
                                   "magnitude/random#1")
    select: bool = True
    probe_steps: int = 5
    objective_weight: float = 1.0
    objective_reduce: str = "max"
    update_interval: int = 100
    update_end: float = 0.75
    drop_fraction: float = 0.5
    final_drop_fraction: float = 0.005
    drop_decay: str = "cosine"
    distribution: str = "erk"
    dense_first: bool = False
    minmax: bool = True
    minmax_start: float = 2 / 3
    minmax_lambda: float = 0.1
    refresh_steps: int = 100
    attacker_steps: int = 1
    risk: str = "advantage"
    prediction: str = "probabilities"
    attacker_batch_size: int = 64
    holdout_fraction: float = 0.2
    validation_samples: int = 1000
    bootstrap_rounds: int = 200
    gap_samples: int = 512
    keep_probe: bool = False

    def __post_init__(self) -> None:
        check_density(self.density)
        specs = [CandidateSpec.parse(c) for c in self.candidates]
        if not specs:
            raise ModelsafeError("at least one candidate strategy is needed")
        if not self.select and len(specs) != 1:
            raise ModelsafeError("select=False takes exactly one candidate strategy (nothing would choose)")
        if self.select:
            _check_selectable(self, specs)
        _check_probe_defence(self, specs)
        if self.minmax and not self.tests:
            raise ModelsafeError("the min-max phase needs at least one safety test (its attackers)")
        for name in self.tests:
            SAFETY_TESTS.get(name)  # unknown names fail here, before any training
        if self.minmax and set(self.tests) <= {"loss", "adversarial"}:
            raise ModelsafeError("the min-max phase needs a learned attacker among the tests ('bmia' or 'wmia'); "
                                 "'loss' and 'adversarial' offer no defence term")
        Objective(self.objective_weight, self.objective_reduce)
        check_non_negative_int("probe_steps", self.probe_steps)
        check_positive_int("update_interval", self.update_interval)
        check_fraction("update_end", self.update_end, closed_low=False)
        check_fraction("minmax_start", self.minmax_start, closed_high=False)
        check_non_negative("minmax_lambda", self.minmax_lambda)
        check_positive_int("refresh_steps", self.refresh_steps)
        check_positive_int("attacker_steps", self.attacker_steps)
        check_positive_int("attacker_batch_size", self.attacker_batch_size)
        check_risk(self.risk)
        check_choice("prediction", self.prediction, ("probabilities", "logits"))
        check_positive_int("validation_samples", self.validation_samples)
        check_positive_int("bootstrap_rounds", self.bootstrap_rounds)
        check_positive_int("gap_samples", self.gap_samples)

_RANDOM_RULES = ("random", "random-unfired")
GAP_RULES = ("magnitude-gap",)  # prune rules that read the member/non-member gap gradient


def _check_selectable(cfg: SafeCompressConfig, specs: list[CandidateSpec]) -> None:
    """Selection needs tests, probe steps and at least two candidates that can differ."""
    if not cfg.tests:
        raise ModelsafeError("select=True needs at least one safety test")
    if cfg.probe_steps < 1:
        raise ModelsafeError("select=True needs probe_steps >= 1: without probing, candidates that prune alike "
                             "compute the same function and the selection could not tell them apart")
    if len(specs) < 2:
        raise ModelsafeError("select=True needs at least two candidate strategies (one leaves nothing to choose)")
    keys = []
    for spec in specs:
        st = spec.strategy
        random = st.prune in _RANDOM_RULES or st.grow in _RANDOM_RULES
        keys.append((st.prune, st.grow, spec.multiplier, spec.defence, st.seed if random else None))
    if len(set(keys)) < len(keys):
        raise ModelsafeError(f"candidate strategies {list(cfg.candidates)} include two that always give the same "
                             "mask (deterministic rules differ only by a '#seed'); make them differ")


def _check_probe_defence(cfg: SafeCompressConfig, specs: list[CandidateSpec]) -> None:
    """Kept probes need a selection; a probe defence weight needs kept probes and a learned attacker."""
    if cfg.keep_probe and not cfg.select:
        raise ModelsafeError("keep_probe=True needs select=True (without selection no candidate is probed)")
    if cfg.keep_probe and cfg.probe_steps >= cfg.update_interval:
        raise ModelsafeError(f"keep_probe=True needs probe_steps ({cfg.probe_steps}) < update_interval "
                             f"({cfg.update_interval}): a kept probe replaces that many of the run's steps, and "
                             "the step before the next update must be the run's own")
    weighted = [c for c, spec in zip(cfg.candidates, specs, strict=True) if spec.defence]
    if not weighted:
        return
    if not cfg.keep_probe:
        raise ModelsafeError(f"candidates {weighted} carry a probe defence weight '~L', which only matters when the "
                             "probed weights are kept: set keep_probe=True")
    if not set(cfg.tests) & {"bmia", "wmia"}:
        raise ModelsafeError(f"candidates {weighted} carry a probe defence weight '~L', which needs a learned "
                             "attacker among the tests ('bmia' or 'wmia')")


# Named configurations. BMIA/WMIA/MMIA follow the TSE paper's instances; the rest are baselines and
# ablations on the same engine, split, initial weights and masks, so a comparison changes one thing at a time.
CONFIGS: dict[str, dict] = {
    "bmia-safecompress": dict(tests=("bmia",)),
    "wmia-safecompress": dict(tests=("wmia",)),
    "mmia-safecompress": dict(tests=("bmia", "wmia")),
    # the ASE paper's MIA-SafeCompress: black-box test-driven selection, no min-max phase
    "mia-safecompress": dict(tests=("bmia",), minmax=False),
    # ablation: bmia-safecompress with the selection by task accuracy only (the attackers, refreshes, probes
    # and min-max phase are those of bmia-safecompress; only the choice ignores the risk)
    "accuracy-safecompress": dict(tests=("bmia",), objective_weight=0.0),
    # the official code's published recipe: one random-growth candidate (no selection), mask updates every
    # 4000 steps until the end, raw logits into the attacker, λ = 0.1 over the last third
    "safecompress-official": dict(tests=("bmia",), candidates=("magnitude/random",), select=False, probe_steps=0,
                                  update_interval=4000, update_end=1.0, prediction="logits"),
    # adversarial regularisation (Nasr et al. 2018) on the sparse engine, no selection; its attacker is
    # refreshed on the same schedule as SafeCompress's, so the min-max phase starts from a warm attacker
    "advreg-sparse": dict(tests=("bmia",), candidates=("magnitude/gradient",), select=False, probe_steps=0),
    # adversarial regularisation of the dense model
    "advreg-dense": dict(density=1.0, tests=("bmia",), candidates=("magnitude/gradient",), select=False,
                         probe_steps=0),
}


def get_config(name: str, **overrides) -> SafeCompressConfig:
    """A named configuration with some fields overridden."""
    if name not in CONFIGS:
        raise UnknownNameError("SafeCompress configuration", name, list(CONFIGS))
    return SafeCompressConfig(**{**CONFIGS[name], **overrides})


class SafeCompress(Callback):
    """The SafeCompress trainer as a :func:`~modelsafe.training.fit` callback that drives the sparse engine
    explicitly (the engine never updates on its own).

    After every optimizer step: the engine re-applies the masks; every ``update_interval`` steps each safety
    test is refreshed (its online attacker trained further and its threshold re-calibrated), whether or not
    this configuration selects; when the engine's schedule says an update is due, one candidate per candidate
    strategy is proposed, probed on common batches, scored on common held-out samples and the chosen one is
    applied. ``tests`` share ``safety_data``; ``validation`` scores task accuracy of candidates; ``members``
    feed the probes. ``.engine`` is built when fitting starts; ``.log`` holds every update (all candidates'
    scores, the choice, the most accurate candidate and the per-update resolution of each risk statistic).

    Under ``torchrun`` (data-parallel :func:`~modelsafe.training.fit`) the candidates of an update are scored on
    different ranks and gathered, and rank 0 alone trains the attackers at each refresh (the others take its state)."""

    def __init__(self, config: SafeCompressConfig, tests: Sequence[SafetyTest], safety_data: SafetyData,
                 validation: TensorData, members: TensorData, *, seed: int = 0):
        self.config = config
        self.specs = [CandidateSpec.parse(c) for c in config.candidates]
        self.tests = list(tests)
        self.safety_data = safety_data
        self.objective = Objective(config.objective_weight, config.objective_reduce)
        gen = make_generator(derive_seed(seed, "safecompress-validation"))
        idx = torch.randperm(len(validation), generator=gen)[:config.validation_samples]
        self.validation = validation.subset(idx)
        self.members = members
        self.seed = seed
        self.engine: DynamicSparsity | None = None
        self.log: list[dict] = []
        self.minmax_from: int | None = None
        self._state: TrainState | None = None

    # ---------------------------------------------------------------- fit hooks
    def on_fit_start(self, state: TrainState) -> None:
        cfg = self.config
        strategies = [s.strategy for s in self.specs]
        self.engine = DynamicSparsity(
            state.model, state.optimizer, cfg.density, distribution=cfg.distribution,
            schedule=UpdateSchedule.for_training(state.total_steps, interval=cfg.update_interval,
                                                 end=cfg.update_end, initial=cfg.drop_fraction,
                                                 final=cfg.final_drop_fraction, decay=cfg.drop_decay),
            strategies=strategies, auto_update=False, layers=LayerSelection(dense_first=cfg.dense_first),
            track_momentum=any("momentum" in s.needs for s in strategies), seed=mask_seed(self.seed))
        for test in self.tests:
            test.prepare(state.model, self.safety_data)
        self.minmax_from = math.ceil(cfg.minmax_start * state.total_steps) if cfg.minmax else None
        self._state = state

    def replaces_step(self, state: TrainState) -> bool:
        """True for the ``probe_steps`` steps after an update whose chosen probe was kept: the probe took them
        (derived from the log and the engine's step count, so a resumed run skips the same steps)."""
        if not self.config.keep_probe or not self.log:
            return False
        return self.engine.step_count < self.log[-1]["step"] + self.config.probe_steps

    def minmax_active(self, state: TrainState) -> bool:
        return self._minmax_at(state.step)

    def _minmax_at(self, step: int) -> bool:
        """Whether a step computing its loss at step count ``step`` falls in the min-max phase."""
        return self.minmax_from is not None and step >= self.minmax_from

    def loss(self, state: TrainState, inputs: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        if not self.minmax_active(state) or self.config.minmax_lambda == 0:
            return loss
        terms = []
        for test in self.tests:
            with torch.autocast(state.device.type, enabled=False):  # the attacker trains in full precision
                test.attacker_step(state.model)
            term = test.defence_loss(state.model, inputs, labels, logits)
            if term is not None:
                terms.append(term)
        return loss + self.config.minmax_lambda * torch.stack(terms).sum() if terms else loss

    def after_optimizer_step(self, state: TrainState) -> None:
        engine = self.engine
        engine.step()
        if engine.step_count % self.config.update_interval == 0:
            self.refresh()
        if engine.update_due():
            self.update()

    def refresh(self) -> None:
        """Train every safety test's attacker further against the live model and re-calibrate it. Under
        ``torchrun`` rank 0 alone trains (the live model is the same on every rank) and every other rank takes
        its state, so the attacker is trained once and no floating-point difference between devices can make
        the ranks' attackers drift apart."""
        if not distributed.active():
            for test in self.tests:
                test.refresh(self.engine.model)
            return
        main = distributed.is_main()
        for test in self.tests:
            if main:
                with distributed.alone():
                    test.refresh(self.engine.model)
            state = distributed.broadcast_object(test.state_dict() if main else None)
            if not main:
                test.load_state_dict(state)

    def on_epoch_end(self, state: TrainState) -> None:
        summary = self.engine.summary()
        state.logs.update(density=summary["density"], itop_rate=summary["itop_rate"],
                          minmax=self.minmax_active(state))
        if self.log:
            state.logs["last_selection"] = self.log[-1]["chosen_strategy"]

    # ---------------------------------------------------------------- one mask update
    def update(self) -> None:
        """Propose one candidate per strategy, score them (when selecting), apply the chosen one, log it."""
        engine, start = self.engine, time.perf_counter()
        fraction = engine.drop_fraction()
        signals = {"gap_grad": self._gap_gradient()} if any(s.strategy.prune in GAP_RULES for s in self.specs) else None
        candidates = engine.propose([spec.at(fraction) for spec in self.specs], signals=signals)
        entry: dict = {"step": engine.step_count, "drop_fraction": fraction}
        probed: dict[int, tuple[nn.Module, torch.optim.Optimizer]] = {}
        if self.config.select:
            choice, probed = self._choose(candidates)
            entry.update(choice)
        else:
            entry.update(chosen=0, candidates=[{"strategy": self._describe(0, candidates[0])}])
        chosen = entry["chosen"]
        entry["chosen_strategy"] = self._describe(chosen, candidates[chosen])
        engine.apply(candidates[chosen])
        if self.config.keep_probe:
            self._adopt(chosen, probed.get(chosen))
        entry["applied_masks_sha"] = masks_digest(engine.masks)
        distributed.check_same(entry["applied_masks_sha"], "the applied SafeCompress masks")
        entry["seconds"] = time.perf_counter() - start
        self.log.append(entry)

    def _describe(self, index: int, candidate: Candidate) -> str:
        text = candidate.strategy.describe()
        weight = self.specs[index].defence
        return f"{text}~{weight:g}" if weight else text

    def _adopt(self, chosen: int, probed: tuple[nn.Module, torch.optim.Optimizer] | None) -> None:
        """Give the live model and optimizer the chosen candidate's probed weights, buffers and optimizer state
        (``keep_probe``). Under ``torchrun`` the rank that probed the candidate sends them to the others."""
        state = None if probed is None else (probed[0].state_dict(), probed[1].state_dict())
        if distributed.active():
            state = distributed.broadcast_object(state, src=chosen % distributed.world_size())
        weights, opt_state = state
        model = self.engine.model
        with torch.no_grad():
            for name, tensor in (*model.named_parameters(), *model.named_buffers()):
                if name in weights:
                    tensor.copy_(weights[name])
        self._state.optimizer.load_state_dict(opt_state)

    def _probe_defence(self, index: int):
        """Candidate ``index``'s probe term at its i-th step, ``w_i · Σ_j defence term_j`` against the tests'
        current (frozen) attackers, or None when every w_i is 0. w_i is the candidate's own weight L, plus, for a
        kept probe (whose steps replace the run's), the run's min-max λ when the step it replaces falls in the
        min-max phase: a kept probe trains as the run would (but its attackers do not step)."""
        cfg, start = self.config, self._state.step  # the run's next step would compute its loss at this count
        weights = [self.specs[index].defence + (cfg.minmax_lambda if cfg.keep_probe and self._minmax_at(start + i) else 0.0)
                   for i in range(cfg.probe_steps)]
        if not any(weights):
            return None
        steps = iter(weights)

        def term(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor):
            weight = next(steps)
            parts = [p for t in self.tests if (p := t.defence_loss(model, inputs, labels, logits)) is not None]
            return weight * torch.stack(parts).sum() if weight and parts else logits.new_zeros(())
        return term

    def _gap_gradient(self) -> dict[str, torch.Tensor]:
        """∂G/∂w for the sparse weights, G = mean CE(attacker non-members) − mean CE(attacker members), on up to
        ``gap_samples`` of each attacker-training set (never the held-out pair the candidates are scored on),
        computed on a copy of the live model in eval mode (the live gradients and statistics stay untouched)."""
        model = self.engine.candidate_model(self.engine.masks).eval()
        device, n = self._state.device, self.config.gap_samples
        params = dict(model.named_parameters())
        gap = 0.0
        for data, sign in ((self.safety_data.attacker_nonmembers, 1.0), (self.safety_data.attacker_members, -1.0)):
            part = data.subset(torch.arange(min(n, len(data))))
            gap = gap + sign * F.cross_entropy(model(part.features().to(device)), part.y.to(device))
        names = list(self.engine.masks)
        grads = torch.autograd.grad(gap, [params[name] for name in names])
        return dict(zip(names, grads, strict=True))

    def _choose(self, candidates: list[Candidate]) -> dict:
        step = self.engine.step_count
        batches = probe_batches(self.members, self.config.probe_steps, self._state.config.batch_size,
                                derive_seed(self.seed, "safecompress-probe", step))
        scored, probed = self._score_all(candidates, batches)
        rows = [row for row, _ in scored]
        best, most_accurate = select(rows, self.objective), select(rows, Objective(0.0))
        resolution = {}
        for test in self.tests:
            if isinstance(test, MembershipSafetyTest):
                boot = PairedBootstrap(*map(len, scored[0][1][test.name]), rounds=self.config.bootstrap_rounds,
                                       seed=derive_seed(self.seed, "safecompress-bootstrap", step, test.name))
                samples = [s[test.name] for _, s in scored]
                resolution[test.name] = {stat: boot.resolution(samples, stat, [test.threshold] * len(samples),
                                                                most_accurate) for stat in RISK_STATISTICS}
        choice = {"chosen": best, "most_accurate": most_accurate, "differs_from_most_accurate": best != most_accurate,
                  "candidates": rows, "resolution": resolution}
        return choice, probed

    def _score_all(self, candidates: list[Candidate],
                   batches: list[torch.Tensor]) -> tuple[list[tuple[dict, dict]], dict[int, tuple]]:
        """Every candidate's (log row, held-out scores by test), in candidate order, and this rank's probed
        (model, optimizer) by candidate index when ``keep_probe`` (else empty). Under ``torchrun`` rank r scores
        candidates r, r + world, ... on its own and every rank receives all rows; each candidate's score
        depends on nothing but the candidate, so the result is that of one process."""
        world, rank = distributed.world_size(), distributed.rank()
        with distributed.alone():
            local = {i: self._score(i, c, batches) for i, c in enumerate(candidates) if i % world == rank}
        mine = {i: (row, samples) for i, (row, samples, _) in local.items()}
        probed = {i: kept for i, (_, _, kept) in local.items() if kept is not None}
        if world > 1:
            for part in distributed.all_gather_objects(mine):
                mine.update(part)
        return [mine[i] for i in range(len(candidates))], probed

    def _score(self, index: int, candidate: Candidate, batches: list[torch.Tensor]) -> tuple[dict, dict, tuple | None]:
        """One candidate probed and scored: its log row, its held-out scores by test, and (``keep_probe``) the
        probed model and optimizer."""
        model = self.engine.candidate_model(candidate)
        device = self._state.device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            rng_seed = derive_seed(self.seed, "safecompress-probe-rng", self.engine.step_count)
            torch.default_generator.manual_seed(rng_seed)  # what dropout in the candidate draws from
            if device.type == "cuda":
                with torch.cuda.device(device):
                    torch.cuda.manual_seed(rng_seed)
            model, opt = probe(model, candidate.masks, self._state.optimizer, self.members, batches, device=device,
                               label_smoothing=self._state.config.label_smoothing,
                               autocast=self._state.config.autocast,
                               defence=self._probe_defence(index))
        accuracy = evaluate(model, self.validation, device=self._state.device)["accuracy"]
        figures, samples = {}, {}
        for test in self.tests:
            if isinstance(test, MembershipSafetyTest):
                samples[test.name] = test.holdout_scores(model)
                figures[test.name] = test.figures(*samples[test.name])
            else:
                figures[test.name] = test.score(model)
        row = {"strategy": self._describe(index, candidate), "drop_fraction": candidate.drop_fraction,
               "masks_sha": masks_digest(candidate.masks), "accuracy": accuracy,
               "risks": {k: v["risk"] for k, v in figures.items()}, "tests": figures}
        row["objective"] = self.objective(row["accuracy"], row["risks"])
        return row, samples, (model, opt) if self.config.keep_probe else None

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        return {"engine": self.engine.state_dict(), "tests": [t.state_dict() for t in self.tests],
                "log": copy.deepcopy(self.log)}

    def load_state_dict(self, state: dict) -> None:
        self.engine.load_state_dict(state["engine"])
        for test, test_state in zip(self.tests, state["tests"], strict=True):
            test.load_state_dict(test_state)
        self.log = copy.deepcopy(state["log"])


def masks_digest(masks: dict[str, torch.Tensor]) -> str:
    """A short SHA-256 of bool masks (by name), to show in logs which mask was applied."""
    digest = hashlib.sha256()
    for name in sorted(masks):
        digest.update(name.encode())
        digest.update(masks[name].detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def run_safecompress(model: nn.Module, dataset: Dataset, split: MembershipSplit,
                     config: SafeCompressConfig | str = "bmia-safecompress", train: TrainConfig | None = None, *,
                     seed: int = 0, device: str | torch.device | None = None, run_dir: str | os.PathLike | None = None,
                     progress: bool = True, test_options: dict | None = None) -> dict:
    """Compress ``model`` with SafeCompress on the members of ``split`` and return a summary.

    ``config``: a :class:`SafeCompressConfig` or a name from :data:`CONFIGS`. ``test_options``: per-test
    options, e.g. ``{"bmia": {"refresh_steps": 200}}``. With ``run_dir`` the run checkpoints every epoch and
    resumes (masks, online attackers, selection log, schedule) after an interruption; the selection log is
    written to ``run_dir/selection.json``."""
    cfg = get_config(config) if isinstance(config, str) else config
    train = train or TrainConfig()
    split.check_dataset(dataset)
    split.validate()
    safety_data = SafetyData.from_split(dataset, split, cfg.holdout_fraction, seed=seed)
    options = {name: {"batch_size": cfg.attacker_batch_size, "refresh_steps": cfg.refresh_steps,
                      "attacker_steps": cfg.attacker_steps, "risk": cfg.risk} for name in ("bmia", "wmia")}
    options["bmia"]["prediction"] = cfg.prediction
    options["loss"] = {"risk": cfg.risk}
    for name, extra in (test_options or {}).items():
        options[name] = {**options.get(name, {}), **extra}
    tests = create_safety_tests(cfg.tests, seed=seed, **options)
    members = split.data(dataset, "members")
    callback = SafeCompress(cfg, tests, safety_data, split.data(dataset, "validation"), members, seed=seed)
    start = time.perf_counter()
    history = fit(model, members, train, val_data=callback.validation, callbacks=[callback], seed=seed,
                  device=device, run_dir=run_dir, progress=progress)
    seconds = time.perf_counter() - start
    callback.engine.remove()
    summary = {"config": asdict(cfg), "history": history, "sparsity": callback.engine.summary(),
               "selections": len(callback.log), "seconds": seconds}
    if run_dir is not None and distributed.is_main():
        write_json(Path(run_dir) / "selection.json", {"config": asdict(cfg), "log": callback.log})
    return {**summary, "log": callback.log}
