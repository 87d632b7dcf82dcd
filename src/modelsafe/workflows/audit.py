"""``audit_run``: membership-inference audit of a trained run folder, written as a Markdown report with ROC
plots (linear and log-log) and per-sample scores."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import torch

from modelsafe.errors import ModelsafeError
from modelsafe.privacy.audit import DEFAULT_ATTACKS, audit
from modelsafe.privacy.references import FitTrainer
from modelsafe.privacy.registry import mia_entry
from modelsafe.privacy.report import MIAReport
from modelsafe.report.audit import write_audit_report
from modelsafe.storage.folder import OwnedFolder
from modelsafe.training import TrainConfig, evaluate
from modelsafe.utils import resolve_device
from modelsafe.workflows.targets import init_model, load_target

AUDIT_ENTRIES = ("report.md", "roc.png", "roc_log.png", "scores", "references", "references-online")


def _train_config(saved: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in known}
    return TrainConfig(**values)


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
              data_root: str | None = None, progress: bool = True) -> tuple[dict[str, MIAReport], Path]:
    """Audit the target in run folder ``run`` with ``attacks`` (fitted on the split's attacker-known members vs
    reference non-members, evaluated on its held-out evaluation members vs non-members) and write
    ``report.md``, ``roc.png``, ``roc_log.png`` and per-sample scores into ``out`` (default ``<run>/audit``;
    each audit replaces the previous report whole; trained reference models are kept as a cache). Reference
    models are trained with the run's training settings. Returns ({attack: report}, path of report.md)."""
    names = list(attacks)
    if not names:
        raise ModelsafeError("no attack to run: give at least one attack name")
    for name in names:
        mia_entry(name)
    dev = resolve_device(device)
    model, data, split, cfg = load_target(run, device=dev, data_root=data_root)
    trainer = FitTrainer(_train_config(cfg.get("train", {})), device=dev)
    width = cfg.get("width", 1.0)
    out_dir = Path(out) if out is not None else Path(run) / "audit"
    with OwnedFolder(out_dir, "audit", AUDIT_ENTRIES).claim(replace=True, keep=("references", "references-online")):
        reports = audit(model, data, split, names, options=options,
                        model_factory=lambda s: init_model(cfg["model"], data, width, s), trainer=trainer,
                        num_reference_models=reference_models, n_bootstrap=bootstrap, out_dir=out_dir,
                        device=dev, seed=seed, progress=progress)
        task = evaluate(model, data.test, device=dev)
        context = {"run": str(run), "dataset": cfg["dataset"], "model": f"{cfg['model']} (width {width})",
                   "members (target training set)": int(split["members"].numel()),
                   "task accuracy (test)": task["accuracy"], "seed": seed}
        path = write_audit_report(reports, out_dir, title=f"Membership-inference audit of {cfg['model']} on "
                                                          f"{cfg['dataset']}", context=context)
    return reports, path
