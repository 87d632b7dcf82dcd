"""``audit(model, dataset, split, attacks)``: run several attacks on one target with the SafeCompress protocol.

Every attack is fitted on the split's ``attack_known_members`` vs ``attack_reference`` (non-members the attacker
knows) and evaluated on the disjoint, held-out ``eval_members`` vs ``eval_nonmembers``. Shadow, LiRA and RMIA
share one set of reference models trained on the split's ``population`` (cached in ``out_dir`` when given)."""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from modelsafe import distributed
from modelsafe._checks import check_positive_int
from modelsafe.data.info import Dataset
from modelsafe.data.membership import split_from_membership
from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.base import MembershipAttack
from modelsafe.privacy.online import OnlineReferenceAttack
from modelsafe.privacy.references import (
    FitTrainer,
    ModelFactory,
    ReferenceModels,
    Trainer,
    UsesReferenceModels,
    architecture_fingerprint,
    store_slot,
    trainer_fingerprint,
)
from modelsafe.privacy.registry import create_mia
from modelsafe.privacy.report import MIAReport
from modelsafe.privacy.sharded import run_attacks
from modelsafe.utils import derive_seed, eval_mode, pick_device

DEFAULT_ATTACKS: tuple[str, ...] = ("correctness", "confidence", "entropy", "modified-entropy", "loss", "blackbox-nn",
                                    "whitebox")


def audit(model: nn.Module, dataset: Dataset, split: MembershipSplit | None = None,
          attacks: Sequence[str | MembershipAttack] = DEFAULT_ATTACKS, *, members=None, non_members=None,
          options: dict[str, dict] | None = None,
          model_factory: ModelFactory | None = None, trainer: Trainer | None = None,
          references: ReferenceModels | None = None, num_reference_models: int = 4,
          reference_train_size: int | None = None, n_bootstrap: int = 1000, out_dir: str | os.PathLike | None = None,
          reference_store: str | os.PathLike | None = None, device: str | torch.device | None = None, seed: int = 0,
          progress: bool = True) -> dict[str, MIAReport]:
    """Attack ``model`` (trained on ``split``'s members of ``dataset``) with each of ``attacks`` and return
    {attack label: report}.

    ``split``: the membership split ``model`` was trained on; for a model trained elsewhere, give instead
    ``members`` (indices into the train split it was trained on) and optionally ``non_members`` (indices into
    ``dataset.pool()``; default: every other sample), and the split is drawn from them with ``seed``
    (:func:`modelsafe.data.split_from_membership`; make it yourself to keep it).

    ``attacks``: registered names (see ``list_mias()``) or ready :class:`MembershipAttack` objects (fitted as
    copies: the given objects and ``model``, whose train/eval mode is restored, are left as they came);
    ``options[name]``: keyword options for the attack created from ``name``. Reference-model attacks
    (``shadow``, ``lira``, ``rmia``) given by name share ``references``, or models trained here from
    ``model_factory(seed)`` with ``trainer`` (default :class:`FitTrainer`) on random ``reference_train_size``
    (default: the target's member count, at most half the population) samples of the population. With
    ``out_dir`` each report's scores are saved there (``scores/``). Reference models are kept in the store
    ``reference_store`` (default ``out_dir/references``), a sub-folder per key (design, seed, dataset,
    architecture, recipe, sample indices) written model by model: an audit with the same key reuses them, an
    interrupted one resumes. :func:`modelsafe.report.write_audit_report` writes the Markdown report. Under
    ``torchrun`` the reference models are shared out across ranks, then the attacks' fits (one rank per
    attack), then the scoring of the evaluation samples (a share of the samples per rank, for every attack;
    :mod:`modelsafe.privacy.sharded`); every rank returns all the reports and rank 0 alone writes ``scores/``."""
    check_positive_int("num_reference_models", num_reference_models)
    split = _resolve_split(dataset, split, members, non_members, seed)
    dev = pick_device(device, model)
    known_m, known_u, eval_m, eval_u = (split.data(dataset, name) for name in (
        "attack_known_members", "attack_reference", "eval_members", "eval_nonmembers"))
    sample_ids = np.concatenate([split["eval_members"].numpy(), split["eval_nonmembers"].numpy()])
    built = _build_attacks(attacks, dict(options or {}), seed, dev, progress)
    store_root = Path(reference_store) if reference_store is not None else _default_store(out_dir)

    _attach_offline_references(built, lambda: references or offline_reference_models(
        dataset, split, model_factory, trainer=trainer, num_models=num_reference_models,
        train_size=reference_train_size, store_root=store_root, device=dev, seed=seed, progress=progress))
    _attach_online_references(built, dataset, split, model_factory, trainer, store_root, dev, seed, progress)

    reports: dict[str, MIAReport] = {}
    with eval_mode(model):
        for report in run_attacks(built, model, (known_m, known_u, eval_m, eval_u), n_bootstrap, sample_ids,
                                  dev, progress):
            key, i = report.attack, 2
            while key in reports:
                key, i = f"{report.attack} #{i}", i + 1
            report.attack = key
            reports[key] = report
            if out_dir is not None and distributed.is_main():
                report.save(Path(out_dir) / "scores")
    return reports


def _default_store(out_dir: str | os.PathLike | None) -> Path | None:
    return Path(out_dir) / "references" if out_dir is not None else None


def _resolve_split(dataset: Dataset, split: MembershipSplit | None, members, non_members,
                   seed: int) -> MembershipSplit:
    """``split``, or one drawn from ``members`` / ``non_members``; checked against ``dataset``."""
    if split is None:
        if members is None:
            raise ModelsafeError("audit needs the target's membership split, or members= (and non_members=)")
        split = split_from_membership(dataset, members, non_members, seed=seed)
    elif members is not None or non_members is not None:
        raise ModelsafeError("give either split= or members=/non_members=, not both")
    split.check_dataset(dataset)
    return split


def _attach_offline_references(built: list[MembershipAttack], make: Callable[[], ReferenceModels]) -> None:
    """Give every offline reference-model attack without references the set ``make()`` returns (one, shared)."""
    needs = [a for a in built if isinstance(a, UsesReferenceModels) and a.references is None and a.population is None]
    if needs:
        refs = make()
        for attack in needs:
            attack.references = refs


def _attach_online_references(built: list[MembershipAttack], dataset: Dataset, split: MembershipSplit,
                              model_factory: ModelFactory | None, trainer: Trainer | None,
                              store_root: Path | None, device: torch.device, seed: int, progress: bool) -> None:
    """Give every online attack without references its IN/OUT models: one set per model count, shared."""
    online: dict[int, ReferenceModels] = {}
    for attack in built:
        if isinstance(attack, OnlineReferenceAttack) and attack.references is None:
            if attack.num_models not in online:
                online[attack.num_models] = _online_reference_models(
                    dataset, split, attack.model_factory or model_factory, attack.trainer or trainer,
                    attack.num_models, store_root, device, seed, progress)
            attack.references = online[attack.num_models]


def _build_attacks(attacks: Sequence[str | MembershipAttack], options: dict[str, dict], seed: int,
                   device: torch.device, progress: bool) -> list[MembershipAttack]:
    """Attack objects for ``attacks`` (names are created with ``options[name]``); options for an attack that is
    not run are an error."""
    built: list[MembershipAttack] = []
    for spec in attacks:
        if isinstance(spec, MembershipAttack):
            built.append(copy.copy(spec))  # fitted and given references here: the caller's object stays as it was
        elif isinstance(spec, str):
            opts = {"seed": derive_seed(seed, "audit", spec), "device": device, "progress": progress,
                    **options.get(spec, {})}
            built.append(create_mia(spec, **opts))
        else:
            raise ModelsafeError(f"attacks must be names or MembershipAttack objects, got {type(spec).__name__}")
    unused = set(options) - {s for s in attacks if isinstance(s, str)}
    if unused:
        raise ModelsafeError(f"options given for attacks that are not run: {', '.join(sorted(unused))}")
    return built


def offline_reference_models(dataset: Dataset, split: MembershipSplit, model_factory: ModelFactory | None, *,
                             trainer: Trainer | None = None, num_models: int = 4, train_size: int | None = None,
                             store_root: str | os.PathLike | None = None, device: torch.device | None = None,
                             seed: int = 0, progress: bool = False) -> ReferenceModels:
    """The reference models :func:`audit` trains for ``shadow``, ``lira`` and ``rmia`` (same arguments, same
    store key), e.g. to train them once and give subsets of them (:meth:`ReferenceModels.first`) to several
    audits: ``num_models`` models, each on random ``train_size`` (default: the target's member count, at most
    half the population) samples of the split's population."""
    device = pick_device(device)
    population_ids = split["population"]
    if population_ids.numel() < 2:
        raise ModelsafeError("shadow/lira/rmia need population data the target never saw, but this split has none; "
                             "use a split with population > 0 (e.g. the 'small' recipe)")
    if model_factory is None:
        raise ModelsafeError("shadow/lira/rmia train reference models: pass model_factory= (seed -> fresh model of "
                             "the target's architecture)")
    population = split.data(dataset, "population")
    if train_size is None:
        train_size = min(int(split["members"].numel()), len(population) // 2)
    trainer = trainer or FitTrainer(device=device)
    fingerprint = {"design": "offline subsets", "seed": seed, "num_models": num_models, "train_size": train_size,
                   **_recipe(dataset, model_factory, trainer, population_ids)}
    store = store_slot(Path(store_root), fingerprint) if store_root is not None else None
    refs = ReferenceModels.train(population, model_factory, trainer, num_models=num_models, train_size=train_size,
                                 seed=derive_seed(seed, "audit-references"), progress=progress, store=store)
    for m in refs.models:
        m.to(device)
    return refs


def _recipe(dataset: Dataset, model_factory: ModelFactory, trainer: Trainer, ids: torch.Tensor) -> dict:
    """What makes two sets of reference models interchangeable besides their design: the dataset, the
    architecture, the training recipe and the sample indices they are drawn from."""
    return {"dataset": dataset.info.name, "architecture": architecture_fingerprint(model_factory),
            "trainer": trainer_fingerprint(trainer), "samples": hashlib.sha256(ids.numpy().tobytes()).hexdigest()}


ONLINE_SETS = ("attack_known_members", "attack_reference", "eval_members", "eval_nonmembers")


def online_population_ids(split: MembershipSplit) -> torch.Tensor:
    """The samples online reference models are trained on halves of: every sample the attacks fit on or score,
    topped up with population samples to twice the target's member count, so that each reference model trains
    on as many samples as the target (LiRA and RMIA train all models on equal-size halves). When the scored
    samples alone are more than that, the reference models train on more samples than the target and
    generalise better; a warning says so."""
    required = torch.cat([split[name] for name in ONLINE_SETS])
    want = 2 * int(split["members"].numel())
    extra = split["population"][:max(0, want - required.numel())]
    if required.numel() > want:
        warnings.warn(f"online reference models train on {required.numel() // 2} samples (half of the "
                      f"{required.numel()} the attacks fit on or score), the target on {want // 2}: score fewer "
                      "samples (e.g. fewer evaluation non-members) for reference models trained like the target",
                      stacklevel=3)
    return torch.cat([required, extra])


def _online_reference_models(dataset: Dataset, split: MembershipSplit, model_factory: ModelFactory | None,
                             trainer: Trainer | None, num_models: int, store_root: Path | None,
                             device: torch.device, seed: int, progress: bool) -> ReferenceModels:
    """Reference models for online attacks: every sample of :func:`online_population_ids` is IN for exactly half
    of ``num_models`` models (:meth:`ReferenceModels.train_balanced`); stored under ``store_root`` by a key of
    the settings, recipe and sample indices."""
    if model_factory is None:
        raise ModelsafeError("online attacks (lira-online, rmia-online) train reference models: pass model_factory= "
                             "(seed -> fresh model of the target's architecture)")
    ids = online_population_ids(split)
    population = dataset.pool().subset(ids)
    trainer = trainer or FitTrainer(device=device)
    fingerprint = {"design": "balanced halves", "seed": seed, "num_models": num_models,
                   **_recipe(dataset, model_factory, trainer, ids)}
    store = store_slot(store_root, fingerprint) if store_root is not None else None
    refs = ReferenceModels.train_balanced(population, model_factory, trainer, num_models=num_models,
                                          seed=derive_seed(seed, "audit-online-references"), progress=progress,
                                          store=store)
    for m in refs.models:
        m.to(device)
    return refs
