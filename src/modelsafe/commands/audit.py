"""``modelsafe audit``: membership-inference audit of a trained run (``--run``,
:func:`modelsafe.workflows.audit_run`) or of a model trained elsewhere (``--weights``,
:func:`modelsafe.workflows.audit_weights_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands import _options as opt
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.audit import DEFAULT_ATTACKS
from modelsafe.privacy.metrics import fpr_key
from modelsafe.privacy.registry import list_mias
from modelsafe.workflows.audit import attack_options, audit_run, audit_weights_run

EXTERNAL = ("weights", "model", "dataset", "members")


@opt.with_groups(opt.RUNTIME)
def audit(
    run: Annotated[str | None, typer.Option(
        "--run", "--run-folder", help="Run folder written by `modelsafe train` (config.json, split.json, "
        "weights.safetensors); under torchrun write --run-folder (torchrun reads --run as its --run-path).")] = None,
    weights: Annotated[str | None, typer.Option(help="Instead of --run: a safetensors file of a model trained "
                                                     "elsewhere (with --model, --dataset, --members).")] = None,
    model: Annotated[str | None, typer.Option(help="With --weights: the architecture (cnn, mlp, vgg11, ...).")] = None,
    width: Annotated[float, typer.Option(help="With --weights: the architecture's width multiplier.")] = 1.0,
    dataset: Annotated[str | None, typer.Option(help="With --weights: the dataset the model was trained on.")] = None,
    members: Annotated[str | None, typer.Option(help="With --weights: file of the training-set indices (into the "
                                                     "dataset's train split), one integer a line, or .npy.")] = None,
    non_members: Annotated[str | None, typer.Option(help="With --weights: file of indices of samples the model "
                                                         "never saw (train split first, then test); default: all "
                                                         "others.")] = None,
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
                                                       "like the target on population data) and the online attacks "
                                                       "(even: half IN, half OUT for every scored sample).")] = 4,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals (0: none).")]
    = 1000,
    out: Annotated[str | None, typer.Option(help="Report folder (default <run>/audit, or <weights stem>-audit).")]
    = None,
    reference_store: Annotated[str | None, typer.Option(help="Folder of trained reference models shared by "
                                                             "audits (default <out>/references); models with the "
                                                             "same recipe, samples and seed are reused.")] = None,
    seed: opt.SeedOpt = 0,
    data_root: opt.DataRootOpt = None,
    dataset_option: opt.DatasetOptionOpt = None,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Run membership-inference attacks on a trained model and write report.md, roc.png, roc_log.png and
    per-sample scores. Attacks are fitted on attacker-known members vs reference non-members and evaluated on
    held-out evaluation members vs non-members."""
    names = [a.strip() for a in attacks.split(",") if a.strip()]
    if not names:
        raise ModelsafeError("--attacks is empty")
    _check_target(run, {"weights": weights, "model": model, "dataset": dataset, "members": members},
                  bool(non_members or dataset_option))
    options = attack_options(names, per_class=per_class, attack_epochs=attack_epochs, select_on=select_on,
                             reference_models=reference_models)
    common = dict(options=options, reference_models=reference_models, bootstrap=bootstrap, out=out, seed=seed,
                  device=device, data_root=data_root, reference_store=reference_store, progress=progress)
    if run is not None:
        reports, path = audit_run(run, names, **common)
    else:
        reports, path = audit_weights_run(weights, model, dataset, members, non_members, names, width=width,
                                          dataset_options=opt.parse_key_values(dataset_option), **common)
    _print(reports, path)


def _check_target(run: str | None, external: dict, extras: bool) -> None:
    """Exactly one of --run and --weights; --weights with all of its companions, --run with none."""
    if (run is None) == (external["weights"] is None):
        raise ModelsafeError("give either --run (a run folder) or --weights (with --model, --dataset, --members)")
    if run is not None and (any(external.values()) or extras):
        raise ModelsafeError("--run brings its model, dataset and split: --model, --dataset, --members, "
                             "--non-members and --dataset-option go with --weights only")
    if run is None and not all(external.values()):
        missing = ", ".join(f"--{k}" for k in EXTERNAL if not external[k])
        raise ModelsafeError(f"--weights needs {missing}")


def _print(reports: dict, path) -> None:
    if not reports:  # a rank other than 0 under torchrun: rank 0 prints
        return
    width_col = max(len(k) for k in reports)
    for label, r in reports.items():
        typer.echo(f"{label:<{width_col}}  acc {r.accuracy:.4f}  AUC {r.auc:.4f}  "
                   f"{fpr_key(0.001)} {r.tpr_at_fpr.get(0.001, float('nan')):.4f}")
    typer.echo(f"report: {path}")
