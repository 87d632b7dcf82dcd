"""``modelsafe compare``: many compression methods on one membership split per seed, each audited afresh
(:func:`modelsafe.workflows.compare_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe import distributed
from modelsafe.commands import _options as opt
from modelsafe.data import SplitSpec
from modelsafe.training import TrainConfig


@opt.with_groups(opt.TARGET.defaults(model="mlp", width=4.0), opt.TRAINING.defaults(epochs=40, batch_size=64),
             opt.SPLIT.defaults(split="small"), opt.RUNTIME)
def compare(
    train: TrainConfig, split_spec: SplitSpec, dataset: str, model: str, width: float,
    methods: Annotated[str, typer.Option(help="Comma-separated methods (see `modelsafe compress --help`).")] =
    "dense,rigl,bmia-safecompress,mmia-safecompress,advreg-sparse,dp-sgd-sparse",
    density: Annotated[float, typer.Option(help="Fraction of conv/linear weights kept, in (0, 1].")] = 0.05,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; mean ± std is reported over them.")] = "0,1,2",
    update_interval: Annotated[int, typer.Option(help="Optimizer steps between mask updates.")] = 100,
    option: opt.MethodOptionOpt = None,
    audit: Annotated[str, typer.Option(help="Comma-separated final-audit attacks.")] = "blackbox-nn,whitebox",
    audit_epochs: Annotated[int | None, typer.Option(help="Epochs of the learned audit attackers (blackbox-nn, "
                                                         "whitebox; default: their own, 100).")] = None,
    audit_repeats: Annotated[int, typer.Option(help="Learned audit attackers fitted per run with different seeds; "
                                                    "their figures are averaged.")] = 1,
    reference_models: Annotated[int | None, typer.Option(
        help="Reference models of the audit attacks built on them (lira, rmia, their online forms, shadow), "
             "trained with each method's own recipe and kept in <out>/<method>/seed<k>/references (default: "
             "the attack's own, 4 offline, 16 online).")] = None,
    out: Annotated[str, typer.Option(help="Output folder (resumable).")] = "runs/compare",
    data_root: opt.DataRootOpt = None,
    dataset_option: opt.DatasetOptionOpt = None,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Compress with every method on the same split, audit each result with fresh membership-inference attacks
    on held-out data, and write table.md, results.csv/json and tradeoff.png (mean ± std over seeds)."""
    from modelsafe._checks import check_seeds
    from modelsafe.compress import CompressOptions
    from modelsafe.compress.methods import check_extras
    from modelsafe.report.compare import format_table
    from modelsafe.workflows import compare_run

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    check_seeds("--seeds", seed_list)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    options = CompressOptions(density=density, update_interval=update_interval, extra=opt.parse_method_options(option),
                              train=train)
    check_extras(method_list, options)  # a mistyped --option that no method reads
    audit_names, attack_options = _audit_settings(audit, audit_epochs, audit_repeats, reference_models)
    result = compare_run(method_list, dataset, model, options=options, split=split_spec, seeds=seed_list, width=width,
                         out=out, device=device, audit_attacks=audit_names, attack_options=attack_options,
                         data_root=data_root, dataset_options=opt.parse_key_values(dataset_option), progress=progress)
    if not distributed.is_main():  # under torchrun rank 0 prints
        return
    typer.echo(format_table(result["summary"]))
    typer.echo(f"results: {out}/table.md, {out}/results.csv, {out}/tradeoff.png")


def _audit_settings(audit: str, audit_epochs: int | None, audit_repeats: int,
                    reference_models: int | None = None) -> tuple[list[str], dict | None]:
    """The final-audit attack names and their options."""
    from modelsafe.privacy.registry import mia_entry

    if audit_epochs is not None and audit_epochs < 1:
        raise typer.BadParameter(f"--audit-epochs must be >= 1, got {audit_epochs}")
    if reference_models is not None and reference_models < 1:
        raise typer.BadParameter(f"--reference-models must be >= 1, got {reference_models}")
    audit_names = [a.strip() for a in audit.split(",") if a.strip()]
    if audit_repeats < 1:
        raise typer.BadParameter(f"--audit-repeats must be >= 1, got {audit_repeats}")
    learned = {"blackbox-nn", "whitebox", "shadow"}
    given = {**({"epochs": audit_epochs} if audit_epochs else {}), **({"repeats": audit_repeats}
                                                                      if audit_repeats > 1 else {})}
    options = {a: dict(given) for a in audit_names if a in learned and given}
    for name in audit_names:
        if reference_models is not None and mia_entry(name).needs_references:
            options.setdefault(name, {})["num_models"] = reference_models
    return audit_names, options or None
