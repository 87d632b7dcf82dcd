"""``modelsafe audit --run <folder>``: membership-inference audit of a trained run, written as a Markdown report
with ROC plots (linear and log-log) and per-sample scores."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from modelsafe.commands._options import ConfigOpt, DataRootOpt, DeviceOpt, ProgressOpt, SeedOpt
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.audit import DEFAULT_ATTACKS
from modelsafe.privacy.audit import audit as run_audit
from modelsafe.privacy.metrics import fpr_key
from modelsafe.privacy.references import FitTrainer
from modelsafe.privacy.registry import list_mias, mia_entry
from modelsafe.privacy.report_writer import write_audit_report
from modelsafe.report.folder import OwnedFolder
from modelsafe.training import TrainConfig, evaluate
from modelsafe.utils import resolve_device

AUDIT_ENTRIES = ("report.md", "roc.png", "roc_log.png", "scores", "references")


def _train_config(saved: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in known}
    return TrainConfig(**values).validate()


def audit(
    run: Annotated[str, typer.Option("--run", help="Run folder written by `modelsafe train` (config.json, "
                                                   "split.json, weights.safetensors).")],
    attacks: Annotated[str, typer.Option(help="Comma-separated attacks: " + ", ".join(list_mias()) + ".")]
    = ",".join(DEFAULT_ATTACKS),
    per_class: Annotated[bool, typer.Option("--per-class/--global", help="Per-class thresholds for the metric "
                                                                        "attacks.")] = False,
    attack_epochs: Annotated[int | None, typer.Option(help="Training epochs of learned attack models "
                                                               "(default 100).")] = None,
    select_on: Annotated[str, typer.Option(help="Epoch selection of learned attacks: 'validation' (held-out "
                                                "attacker data) or 'eval' (the papers' optimistic best-on-evaluation"
                                                ").")] = "validation",
    reference_models: Annotated[int, typer.Option(help="Reference/shadow models for shadow, lira, rmia (trained "
                                                       "like the target on population data).")] = 4,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals (0: none).")]
    = 1000,
    out: Annotated[str | None, typer.Option(help="Report folder (default <run>/audit).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_root: DataRootOpt = None,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Run membership-inference attacks on a trained run and write report.md, roc.png, roc_log.png and
    per-sample scores. Attacks are fitted on the split's attacker-known members vs reference non-members and
    evaluated on its held-out evaluation members vs non-members."""
    del config
    from modelsafe.targets import init_model, load_target

    names = [a.strip() for a in attacks.split(",") if a.strip()]
    if not names:
        raise ModelsafeError("--attacks is empty")
    entries = {n: mia_entry(n) for n in names}
    dev = resolve_device(device)
    model, data, split, cfg = load_target(run, device=dev, data_root=data_root)
    options: dict[str, dict] = {}
    for name, entry in entries.items():
        if entry.family == "metric" and per_class:
            options[name] = {"per_class": True}
        if entry.family in ("learned", "shadow") and attack_epochs is not None:
            options.setdefault(name, {})["epochs"] = attack_epochs
        if entry.family == "learned":
            options.setdefault(name, {})["select_on"] = select_on
    trainer = FitTrainer(_train_config(cfg.get("train", {})), device=dev)
    width = cfg.get("width", 1.0)
    out_dir = Path(out) if out is not None else Path(run) / "audit"
    # each audit replaces the previous report whole (no score files of earlier attacks are left); the
    # reference models are a cache checked by fingerprint, so they are kept
    with OwnedFolder(out_dir, "audit", AUDIT_ENTRIES).claim(replace=True, keep=("references",)):
        reports = run_audit(model, data, split, names, options=options,
                            model_factory=lambda s: init_model(cfg["model"], data, width, s), trainer=trainer,
                            num_reference_models=reference_models, n_bootstrap=bootstrap, out_dir=out_dir,
                            device=dev, seed=seed, progress=progress)
        task = evaluate(model, data.test, device=dev)
        context = {"run": str(run), "dataset": cfg["dataset"], "model": f"{cfg['model']} (width {width})",
                   "members (target training set)": int(split["members"].numel()),
                   "task accuracy (test)": task["accuracy"], "seed": seed}
        path = write_audit_report(reports, out_dir, title=f"Membership-inference audit of {cfg['model']} on "
                                                          f"{cfg['dataset']}", context=context)
    width_col = max(len(k) for k in reports)
    for label, r in reports.items():
        typer.echo(f"{label:<{width_col}}  acc {r.accuracy:.4f}  AUC {r.auc:.4f}  "
                   f"{fpr_key(0.001)} {r.tpr_at_fpr.get(0.001, float('nan')):.4f}")
    typer.echo(f"report: {path}")
