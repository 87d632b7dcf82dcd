"""``audit_run``: membership-inference audit of a trained run folder, written as a Markdown report with ROC
plots (linear and log-log) and per-sample scores."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from modelsafe import distributed
from modelsafe.data import Dataset, MembershipSplit
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.audit import DEFAULT_ATTACKS, audit
from modelsafe.privacy.references import FitTrainer, Trainer
from modelsafe.privacy.registry import mia_entry
from modelsafe.privacy.report import MIAReport
from modelsafe.report.audit import write_audit_report
from modelsafe.storage.folder import OwnedFolder
from modelsafe.training import TrainConfig, evaluate
from modelsafe.utils import resolve_device
from modelsafe.workflows.recipe import Recipe
from modelsafe.workflows.targets import init_model, load_target

AUDIT_ENTRIES = ("report.md", "roc.png", "roc_log.png", "scores", "references",
                 "split.json")


def attack_options(names: list[str], *, per_class: bool = False, attack_epochs: int | None = None,
                   select_on: str = "validation", reference_models: int | None = None) -> dict[str, dict]:
    """Per-attack options for :func:`~modelsafe.privacy.audit`: per-class thresholds for the metric attacks,
    epochs for learned and shadow attacks, epoch selection for learned attacks, the number of reference models
    of online attacks (which train their own IN/OUT models)."""
    options: dict[str, dict] = {}
    for name in names:
        entry = mia_entry(name)
        if entry.family == "metric" and per_class:
            options[name] = {"per_class": True}
        if entry.family in ("learned", "shadow") and attack_epochs is not None:
            options.setdefault(name, {})["epochs"] = attack_epochs
        if entry.family == "learned":
            options.setdefault(name, {})["select_on"] = select_on
        if entry.family == "online" and reference_models is not None:
            options.setdefault(name, {})["num_models"] = reference_models
    return options


def audit_run(run: str | os.PathLike, attacks: list[str] | tuple[str, ...] = DEFAULT_ATTACKS, *,
              options: dict[str, dict] | None = None, reference_models: int = 4, bootstrap: int = 1000,
              out: str | os.PathLike | None = None, seed: int = 0, device: str | torch.device | None = None,
              data_root: str | None = None, reference_store: str | os.PathLike | None = None,
              progress: bool = True) -> tuple[dict[str, MIAReport], Path]:
    """Audit the target in run folder ``run`` with ``attacks`` (fitted on the split's attacker-known members vs
    reference non-members, evaluated on its held-out evaluation members vs non-members) and write
    ``report.md``, ``roc.png``, ``roc_log.png`` and per-sample scores into ``out`` (default ``<run>/audit``;
    each audit replaces the previous report whole; trained reference models are kept as a cache). Reference
    models are trained with the run's recipe (:class:`~modelsafe.workflows.recipe.Recipe`: architecture,
    training settings, compression method and its options) and kept in ``reference_store`` (default
    ``<out>/references``), where any later audit with the same key reuses them. Returns ({attack: report},
    path of report.md)."""
    names = _check_attacks(attacks)
    dev = distributed.local_device(resolve_device(device))
    model, data, split, cfg = load_target(run, device=dev, data_root=data_root)
    recipe = Recipe.from_run_config(cfg)
    needs = any(mia_entry(n).needs_references for n in names)
    trainer = recipe.trainer(dev, dataset=data, split=split) if needs else None
    context = {"run": str(run), "dataset": cfg["dataset"], "model": f"{recipe.model} (width {recipe.width})",
               "reference-model recipe": recipe.describe()["method"]}
    job = AuditJob(names, options, reference_models, bootstrap, seed, dev, progress, reference_store)
    return _audit_into(Path(out) if out is not None else Path(run) / "audit", job, model, data, split,
                       recipe.model_factory(data), trainer, context,
                       f"Membership-inference audit of {cfg['model']} on {cfg['dataset']}")


def audit_weights_run(weights: str | os.PathLike, model: str, dataset: str | Dataset, members,
                      non_members=None, attacks: list[str] | tuple[str, ...] = DEFAULT_ATTACKS, *,
                      width: float = 1.0, train: TrainConfig | None = None, options: dict[str, dict] | None = None,
                      reference_models: int = 4, bootstrap: int = 1000, out: str | os.PathLike | None = None,
                      seed: int = 0, device: str | torch.device | None = None, data_root: str | None = None,
                      dataset_options: dict | None = None, reference_store: str | os.PathLike | None = None,
                      progress: bool = True) -> tuple[dict[str, MIAReport], Path]:
    """Audit a model trained elsewhere: architecture ``model`` (width ``width``) with the safetensors
    ``weights``, trained on ``members`` of ``dataset`` (indices into its train split: a tensor, or an index
    file with one integer a line, or ``.npy``); ``non_members`` likewise into ``dataset.pool()`` (default:
    every other sample). The attacker-known and evaluation sets are drawn from them with ``seed`` and saved as
    ``split.json`` with the report in ``out`` (default ``<weights stem>-audit`` beside the weights). Reference
    models are trained with ``train`` (default :class:`TrainConfig`; give the target's own recipe when known).
    Every input is checked before anything is trained."""
    from modelsafe.data import load_dataset, read_indices, split_from_membership
    from modelsafe.storage.io import load_weights

    names = _check_attacks(attacks)
    dev = distributed.local_device(resolve_device(device))
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, root=data_root,
                                                                    **(dataset_options or {}))
    member_ids = read_indices(members, "members") if isinstance(members, (str, os.PathLike)) else members
    other_ids = (read_indices(non_members, "non-members") if isinstance(non_members, (str, os.PathLike))
                 else non_members)
    split = split_from_membership(data, member_ids, other_ids, seed=seed)
    net = load_weights(weights, init_model(model, data, width, seed)).to(dev)
    trainer = FitTrainer(train or TrainConfig(), device=dev)
    context = {"weights": str(weights), "dataset": data.info.name, "model": f"{model} (width {width})",
               "reference-model training": "given recipe" if train is not None else "default TrainConfig"}
    out_dir = Path(out) if out is not None else Path(weights).with_name(Path(weights).stem + "-audit")
    job = AuditJob(names, options, reference_models, bootstrap, seed, dev, progress, reference_store)
    return _audit_into(out_dir, job, net, data, split, lambda s: init_model(model, data, width, s), trainer, context,
                       f"Membership-inference audit of {model} ({Path(weights).name}) on {data.info.name}",
                       save_split=True)


@dataclass(frozen=True)
class AuditJob:
    """What an audit runs: attack names and options, reference-model count, bootstrap resamples, seed, device,
    and where reference models are stored."""

    names: list[str]
    options: dict[str, dict] | None
    reference_models: int
    bootstrap: int
    seed: int
    device: torch.device
    progress: bool
    reference_store: str | os.PathLike | None = None


def _check_attacks(attacks) -> list[str]:
    names = list(attacks)
    if not names:
        raise ModelsafeError("no attack to run: give at least one attack name")
    for name in names:
        mia_entry(name)
    return names


def _audit_into(out_dir: Path, job: AuditJob, model: torch.nn.Module, data: Dataset, split: MembershipSplit,
                model_factory, trainer: Trainer | None, context: dict, title: str,
                save_split: bool = False) -> tuple[dict[str, MIAReport], Path]:
    """Run the audit into the claimed folder ``out_dir`` and write its report. Under ``torchrun`` every rank
    trains its share of the reference models into the store (:class:`~modelsafe.privacy.ReferenceModels`);
    rank 0 alone claims the folder and writes the report (the other ranks return no reports)."""
    if not distributed.is_main():
        distributed.broadcast_object()  # rank 0 has claimed the folder (and may have cleared it)
        audit(model, data, split, job.names, options=job.options, model_factory=model_factory, trainer=trainer,
              num_reference_models=job.reference_models, n_bootstrap=job.bootstrap, out_dir=None,
              reference_store=job.reference_store or out_dir / "references", device=job.device, seed=job.seed,
              progress=False)
        return {}, out_dir / "report.md"
    with OwnedFolder(out_dir, "audit", AUDIT_ENTRIES).claim(replace=True, keep=("references",)):
        distributed.broadcast_object(True)
        if save_split:
            split.save(out_dir / "split.json")
        reports = audit(model, data, split, job.names, options=job.options, model_factory=model_factory,
                        trainer=trainer, num_reference_models=job.reference_models, n_bootstrap=job.bootstrap,
                        out_dir=out_dir, reference_store=job.reference_store, device=job.device, seed=job.seed,
                        progress=job.progress)
        task = evaluate(model, data.test, device=job.device)
        context = {**context, "members (target training set)": int(split["members"].numel()),
                   "task accuracy (test)": task["accuracy"], "seed": job.seed}
        path = write_audit_report(reports, out_dir, title=title, context=context)
    return reports, path
