"""SafeCompress: test-driven safe compression (Zhu, Wang, Han et al., ASE 2022; TSE 2024).

A dense model becomes a sparse one by dynamic sparse training (ERK initial masks, scheduled prune → grow).
At every mask update:

1. every safety test's online attacker is trained further against the current model (``refresh_steps``);
2. one candidate mask is proposed per candidate strategy (:meth:`DynamicSparsity.propose`; the live model
   and optimizer are untouched);
3. each candidate is fine-tuned for ``probe_steps`` steps on a copy and scored: task accuracy on a
   validation sample, and risk from every safety test on held-out attacker-known data;
4. the candidate with the best objective (:class:`~modelsafe.compress.selection.Objective`) is applied and
   every candidate's scores are logged.

From ``minmax_start`` (fraction of training) on, the defender minimises CE + λ·Σ_j log h_j (Nasr et al.'s
adversarial regularisation against the same online attackers, papers.md A4.7), with ``attacker_steps``
attacker updates per defender step. BMIA, WMIA and MMIA-SafeCompress are configurations of this one trainer
(:data:`CONFIGS`).

Departures from the papers, all options (papers.md A5 lists what could not be verified):

* Candidates: the papers' "strategies" are not specified. Default: four candidates, magnitude pruning with
  RigL-gradient, momentum and two random growths. Because regrown weights start at zero, candidates that
  prune alike compute the same function at the moment of the update; each is therefore fine-tuned for
  ``probe_steps`` steps (on a copy) before scoring, and a strategy may carry a drop-fraction multiplier
  (``"magnitude/gradient@x2"``) so candidates also differ in how much they prune.
* Selection: accuracy − w·max risk with w = 1 (modelsafe's choice).
* Model selection data: a validation split of the training distribution, never the test set (the official
  code validates on the test set).
* The official code's behaviour is the ``safecompress-official`` configuration: random growth, one
  candidate (no selection), λ = 0.1 over the last third, updates until the end of training.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from modelsafe._checks import (
    check_density,
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_positive_int,
)
from modelsafe.compress.safety import SafetyData, SafetyTest, check_risk, create_safety_tests
from modelsafe.compress.selection import Objective, select
from modelsafe.data.info import Dataset, TensorData
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.report.io import write_json
from modelsafe.sparse.engine import Candidate, DynamicSparsity
from modelsafe.sparse.rules import Strategy
from modelsafe.training import Callback, TrainConfig, TrainState, evaluate, fit
from modelsafe.utils import derive_seed, make_generator


@dataclass(frozen=True)
class CandidateSpec:
    """A candidate strategy written ``"prune/grow[#seed][@xM]"``: prune and grow rules, a seed for random
    choices, and a multiplier M of the scheduled drop fraction (capped at 1)."""

    strategy: Strategy
    multiplier: float = 1.0

    @classmethod
    def parse(cls, text: str) -> CandidateSpec:
        body, _, mult = text.partition("@x")
        body, _, seed = body.partition("#")
        try:
            multiplier = float(mult) if mult else 1.0
            seed_value = int(seed) if seed else 0
        except ValueError:
            raise ModelsafeError(f"bad candidate strategy {text!r}; expected 'prune/grow[#seed][@xM]'") from None
        if multiplier <= 0:
            raise ModelsafeError(f"candidate {text!r}: the drop-fraction multiplier must be > 0")
        base = Strategy.coerce(body)
        return cls(Strategy(base.prune, base.grow, seed_value), multiplier)

    def at(self, fraction: float) -> Strategy:
        if self.multiplier == 1.0:
            return self.strategy
        return replace(self.strategy, drop_fraction=min(1.0, fraction * self.multiplier))


@dataclass(frozen=True)
class SafeCompressConfig:
    """Settings of one SafeCompress run (see the module docstring for each stage).

    ``tests``: safety tests (``bmia``, ``wmia``, ``adversarial``); ``select=False`` applies the single
    candidate without scoring (plain DST / the official code). ``update_interval``: optimizer steps between
    mask updates; ``update_end``: fraction of training after which masks are frozen. ``minmax_start`` /
    ``minmax_lambda``: the adversarial-regularisation phase (``minmax=False`` turns it off). ``risk``: how the
    MIA tests turn their held-out figures into a risk, ``"advantage"`` (the papers') or ``"auc"``
    (2·AUC − 1, threshold-free)."""

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
    minmax: bool = True
    minmax_start: float = 2 / 3
    minmax_lambda: float = 0.1
    refresh_steps: int = 100
    attacker_steps: int = 1
    risk: str = "advantage"
    attacker_batch_size: int = 64
    holdout_fraction: float = 0.2
    validation_samples: int = 1000

    def validate(self) -> SafeCompressConfig:
        check_density(self.density)
        specs = [CandidateSpec.parse(c) for c in self.candidates]
        if not specs:
            raise ModelsafeError("at least one candidate strategy is needed")
        if not self.select and len(specs) != 1:
            raise ModelsafeError("select=False takes exactly one candidate strategy (nothing would choose)")
        if self.select and not self.tests:
            raise ModelsafeError("select=True needs at least one safety test")
        if self.minmax and not self.tests:
            raise ModelsafeError("the min-max phase needs at least one safety test (its attackers)")
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
        check_positive_int("validation_samples", self.validation_samples)
        return self


# Named configurations. BMIA/WMIA/MMIA follow the TSE paper's instances; the rest are baselines on the same
# engine and split, so a comparison changes one thing at a time.
CONFIGS: dict[str, dict] = {
    "bmia-safecompress": dict(tests=("bmia",)),
    "wmia-safecompress": dict(tests=("wmia",)),
    "mmia-safecompress": dict(tests=("bmia", "wmia")),
    # the ASE paper's MIA-SafeCompress: black-box test-driven selection, no min-max phase
    "mia-safecompress": dict(tests=("bmia",), minmax=False),
    # the official code as published: random growth, one candidate, λ=0.1 in the last third, updates to the end
    "safecompress-official": dict(tests=("bmia",), candidates=("magnitude/random",), select=False, probe_steps=0,
                                  update_end=1.0),
    # adversarial regularisation (Nasr et al. 2018) on the sparse engine, no selection
    "advreg-sparse": dict(tests=("bmia",), candidates=("magnitude/gradient",), select=False, probe_steps=0),
    # adversarial regularisation of the dense model
    "advreg-dense": dict(density=1.0, tests=("bmia",), candidates=("magnitude/gradient",), select=False,
                         probe_steps=0),
}


def get_config(name: str, **overrides) -> SafeCompressConfig:
    """A named configuration with some fields overridden."""
    if name not in CONFIGS:
        raise UnknownNameError("SafeCompress configuration", name, list(CONFIGS))
    return SafeCompressConfig(**{**CONFIGS[name], **overrides}).validate()


class SafeCompress(Callback):
    """The SafeCompress trainer as a :func:`~modelsafe.training.fit` callback.

    ``tests`` share ``safety_data``; ``validation`` scores task accuracy of candidates; ``members`` feed the
    candidates' probe fine-tuning. The sparse engine is built when fitting starts and is then available as
    ``.engine``; ``.log`` holds every selection (all candidates' scores and the choice)."""

    def __init__(self, config: SafeCompressConfig, tests: Sequence[SafetyTest], safety_data: SafetyData,
                 validation: TensorData, members: TensorData, *, seed: int = 0):
        self.config = config.validate()
        self.specs = [CandidateSpec.parse(c) for c in config.candidates]
        self.tests = list(tests)
        self.safety_data = safety_data
        self.objective = Objective(config.objective_weight, config.objective_reduce)
        gen = make_generator(derive_seed(seed, "safecompress-validation"))
        idx = torch.randperm(len(validation), generator=gen)[:config.validation_samples]
        self.validation = validation.subset(idx)
        self.members = members
        self.seed = seed
        self.probe_gen = make_generator(derive_seed(seed, "safecompress-probe"))
        self.engine: DynamicSparsity | None = None
        self.log: list[dict] = []
        self.minmax_from: int | None = None
        self._state: TrainState | None = None

    # ---------------------------------------------------------------- fit hooks
    def on_fit_start(self, state: TrainState) -> None:
        cfg = self.config
        strategies = [s.strategy for s in self.specs]
        self.engine = DynamicSparsity(
            state.model, state.optimizer, cfg.density, total_steps=state.total_steps,
            update_interval=cfg.update_interval, distribution=cfg.distribution, drop_fraction=cfg.drop_fraction,
            final_drop_fraction=cfg.final_drop_fraction, drop_decay=cfg.drop_decay, end=cfg.update_end,
            strategies=strategies[:1] if cfg.select else strategies,
            selector=self._select if cfg.select else None,
            track_momentum=any("momentum" in s.needs for s in strategies), seed=self.seed)
        for test in self.tests:
            test.prepare(state.model, self.safety_data)
        self.minmax_from = math.ceil(cfg.minmax_start * state.total_steps) if cfg.minmax else None
        self._state = state

    def minmax_active(self, state: TrainState) -> bool:
        return self.minmax_from is not None and state.step >= self.minmax_from

    def loss(self, state: TrainState, inputs: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor,
             loss: torch.Tensor) -> torch.Tensor:
        if not self.minmax_active(state) or self.config.minmax_lambda == 0:
            return loss
        terms = []
        for test in self.tests:
            test.attacker_step(state.model)
            term = test.defence_loss(state.model, inputs, labels, logits)
            if term is not None:
                terms.append(term)
        return loss + self.config.minmax_lambda * torch.stack(terms).sum() if terms else loss

    def after_optimizer_step(self, state: TrainState) -> None:
        self.engine.step()

    def on_epoch_end(self, state: TrainState) -> None:
        summary = self.engine.summary()
        state.logs.update(density=summary["density"], itop_rate=summary["itop_rate"],
                          minmax=self.minmax_active(state))
        if self.log:
            state.logs["last_selection"] = self.log[-1]["chosen_strategy"]

    # ---------------------------------------------------------------- selection
    def _select(self, proposed: list[Candidate], engine: DynamicSparsity) -> Candidate:
        del proposed  # the engine proposes the first strategy only; the full candidate set is built here
        start = time.perf_counter()
        fraction = engine.drop_fraction()
        candidates = engine.propose([spec.at(fraction) for spec in self.specs])
        for test in self.tests:
            test.refresh(engine.model)
        rows = [self._score(candidate) for candidate in candidates]
        best = select(rows, self.objective)
        self.log.append({"step": engine.step_count, "drop_fraction": fraction, "chosen": best,
                         "chosen_strategy": rows[best]["strategy"], "candidates": rows,
                         "seconds": time.perf_counter() - start})
        return candidates[best]

    def _score(self, candidate: Candidate) -> dict:
        if self.config.probe_steps:
            model = self.engine.candidate_model(candidate)
            self._probe(model, candidate)
            figures = self._measure(model)
        else:
            with self.engine.trial(candidate) as model:
                figures = self._measure(model)
        row = {"strategy": candidate.strategy.describe(), "drop_fraction": candidate.drop_fraction, **figures}
        row["objective"] = self.objective(row["accuracy"], row["risks"])
        return row

    def _measure(self, model: nn.Module) -> dict:
        accuracy = evaluate(model, self.validation, device=self._state.device)["accuracy"]
        scores = {test.name: test.score(model) for test in self.tests}
        return {"accuracy": accuracy, "risks": {k: v["risk"] for k, v in scores.items()}, "tests": scores}

    def _probe(self, model: nn.Module, candidate: Candidate) -> None:
        """Fine-tune a candidate copy for ``probe_steps`` SGD steps on member batches, masks enforced."""
        lr = self._state.optimizer.param_groups[0]["lr"]
        params = dict(model.named_parameters())
        masks = {name: mask.to(params[name].device) for name, mask in candidate.masks.items()}
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        model.train()
        for _ in range(self.config.probe_steps):
            idx = torch.randint(len(self.members), (self._state.config.batch_size,), generator=self.probe_gen)
            x = self.members.features(idx).to(self._state.device)
            y = self.members.y[idx].to(self._state.device)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            with torch.no_grad():
                for name, mask in masks.items():
                    params[name].mul_(mask)
        model.eval()

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict:
        return {"engine": self.engine.state_dict(), "tests": [t.state_dict() for t in self.tests],
                "log": copy.deepcopy(self.log), "probe_generator": self.probe_gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.engine.load_state_dict(state["engine"])
        for test, test_state in zip(self.tests, state["tests"], strict=True):
            test.load_state_dict(test_state)
        self.log = copy.deepcopy(state["log"])
        self.probe_gen.set_state(state["probe_generator"])


def run_safecompress(model: nn.Module, dataset: Dataset, split: MembershipSplit,
                     config: SafeCompressConfig | str = "bmia-safecompress", train: TrainConfig | None = None, *,
                     seed: int = 0, device: str | torch.device | None = None, run_dir: str | os.PathLike | None = None,
                     progress: bool = True, test_options: dict | None = None) -> dict:
    """Compress ``model`` with SafeCompress on the members of ``split`` and return a summary.

    ``config``: a :class:`SafeCompressConfig` or a name from :data:`CONFIGS`. ``test_options``: per-test
    options, e.g. ``{"bmia": {"refresh_steps": 200}}``. With ``run_dir`` the run checkpoints every epoch and
    resumes (masks, online attackers, selection log, schedule) after an interruption; the selection log is
    written to ``run_dir/selection.json``."""
    cfg = get_config(config) if isinstance(config, str) else config.validate()
    train = (train or TrainConfig()).validate()
    split.check_dataset(dataset)
    split.validate()
    pool = dataset.pool()
    safety_data = SafetyData.from_split(dataset, split, cfg.holdout_fraction, seed=seed, pool=pool)
    options = {name: {"batch_size": cfg.attacker_batch_size, "refresh_steps": cfg.refresh_steps,
                      "attacker_steps": cfg.attacker_steps, "risk": cfg.risk} for name in ("bmia", "wmia")}
    for name, extra in (test_options or {}).items():
        options[name] = {**options.get(name, {}), **extra}
    tests = create_safety_tests(cfg.tests, seed=seed, **options)
    members = split.data(dataset, "members", pool)
    callback = SafeCompress(cfg, tests, safety_data, split.data(dataset, "validation", pool), members, seed=seed)
    start = time.perf_counter()
    history = fit(model, members, train, val_data=callback.validation, callbacks=[callback], seed=seed,
                  device=device, run_dir=run_dir, progress=progress)
    seconds = time.perf_counter() - start
    callback.engine.remove()
    summary = {"config": asdict(cfg), "history": history, "sparsity": callback.engine.summary(),
               "selections": len(callback.log), "seconds": seconds}
    if run_dir is not None:
        write_json(Path(run_dir) / "selection.json", {"config": asdict(cfg), "log": callback.log})
    return {**summary, "log": callback.log}
