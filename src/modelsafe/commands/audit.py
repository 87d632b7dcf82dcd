"""``modelsafe audit --run <folder>``: membership-inference audit of a trained run
(:func:`modelsafe.workflows.audit_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands._options import RUNTIME, DataRootOpt, SeedOpt, with_groups
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.audit import DEFAULT_ATTACKS
from modelsafe.privacy.metrics import fpr_key
from modelsafe.privacy.registry import list_mias
from modelsafe.workflows.audit import attack_options, audit_run


@with_groups(RUNTIME)
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
                                                       "like the target on population data) and lira-online "
                                                       "(even: half IN, half OUT for every scored sample).")] = 4,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals (0: none).")]
    = 1000,
    out: Annotated[str | None, typer.Option(help="Report folder (default <run>/audit).")] = None,
    seed: SeedOpt = 0,
    data_root: DataRootOpt = None,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Run membership-inference attacks on a trained run and write report.md, roc.png, roc_log.png and
    per-sample scores. Attacks are fitted on the split's attacker-known members vs reference non-members and
    evaluated on its held-out evaluation members vs non-members."""
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    if not names:
        raise ModelsafeError("--attacks is empty")
    options = attack_options(names, per_class=per_class, attack_epochs=attack_epochs, select_on=select_on,
                             reference_models=reference_models)
    reports, path = audit_run(run, names, options=options, reference_models=reference_models, bootstrap=bootstrap,
                              out=out, seed=seed, device=device, data_root=data_root, progress=progress)
    width_col = max(len(k) for k in reports)
    for label, r in reports.items():
        typer.echo(f"{label:<{width_col}}  acc {r.accuracy:.4f}  AUC {r.auc:.4f}  "
                   f"{fpr_key(0.001)} {r.tpr_at_fpr.get(0.001, float('nan')):.4f}")
    typer.echo(f"report: {path}")
