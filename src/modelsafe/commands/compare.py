"""``modelsafe compare``: many compression methods on one membership split per seed, each audited afresh."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands._options import (
    ConfigOpt,
    DataRootOpt,
    DatasetOptionOpt,
    DeviceOpt,
    MethodOptionOpt,
    ProgressOpt,
    parse_key_values,
    parse_method_options,
)

COMPARE_FILES = ("results.json", "results.csv", "table.md", "tradeoff.png")


def compare(
    methods: Annotated[str, typer.Option(help="Comma-separated methods (see `modelsafe compress --help`).")] =
    "dense,rigl,bmia-safecompress,mmia-safecompress,advreg-sparse,dp-sgd-sparse",
    dataset: Annotated[str, typer.Option(help="Dataset name.")] = "fashion-mnist",
    model: Annotated[str, typer.Option(help="Model name.")] = "mlp",
    width: Annotated[float, typer.Option(help="Width multiplier of the model.")] = 4.0,
    density: Annotated[float, typer.Option(help="Fraction of conv/linear weights kept, in (0, 1].")] = 0.05,
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; mean ± std is reported over them.")] = "0,1,2",
    epochs: Annotated[int, typer.Option(help="Training epochs per run.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 64,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.05,
    update_interval: Annotated[int, typer.Option(help="Optimizer steps between mask updates.")] = 100,
    split: Annotated[str, typer.Option(help="Membership split recipe: small (2,500 members) or safecompress.")]
    = "small",
    members: Annotated[int | None, typer.Option(help="Override the recipe's member count.")] = None,
    option: MethodOptionOpt = None,
    audit: Annotated[str, typer.Option(help="Comma-separated final-audit attacks.")] = "blackbox-nn,whitebox",
    audit_epochs: Annotated[int | None, typer.Option(help="Epochs of the learned audit attackers (blackbox-nn, "
                                                         "whitebox; default: their own, 100).")] = None,
    audit_repeats: Annotated[int, typer.Option(help="Learned audit attackers fitted per run with different seeds; "
                                                    "their figures are averaged.")] = 1,
    out: Annotated[str, typer.Option(help="Output folder (resumable).")] = "runs/compare",
    device: DeviceOpt = "auto",
    data_root: DataRootOpt = None,
    dataset_option: DatasetOptionOpt = None,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Compress with every method on the same split, audit each result with fresh membership-inference attacks
    on held-out data, and write table.md, results.csv/json and tradeoff.png (mean ± std over seeds)."""
    del config
    from modelsafe._checks import check_seeds
    from modelsafe.compress import CompressOptions
    from modelsafe.compress.compare import compare as run_compare
    from modelsafe.compress.compare import format_table
    from modelsafe.compress.methods import check_extras, check_method
    from modelsafe.data import get_recipe, load_dataset
    from modelsafe.report.folder import OwnedFolder
    from modelsafe.training import TrainConfig

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    check_seeds("--seeds", seed_list)
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    recipe = get_recipe(split, members=members)
    options = CompressOptions(density=density, update_interval=update_interval, extra=parse_method_options(option),
                              train=TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr)).validate()
    for name in method_list:
        check_method(name, options)
    check_extras(method_list, options)
    audit_names, attack_options = _audit_settings(audit, audit_epochs, audit_repeats)
    data = load_dataset(dataset, root=data_root, **parse_key_values(dataset_option))
    entries = [*COMPARE_FILES, *method_list, *(f"split-seed{s}.json" for s in seed_list)]
    with OwnedFolder(out, "compare", entries).claim():
        result = run_compare(method_list, data, model, options=options, split=recipe, seeds=seed_list, width=width,
                             out=out, device=device, audit_attacks=audit_names, attack_options=attack_options,
                             progress=progress)
    typer.echo(format_table(result["summary"]))
    typer.echo(f"results: {out}/table.md, {out}/results.csv, {out}/tradeoff.png")


def _audit_settings(audit: str, audit_epochs: int | None, audit_repeats: int) -> tuple[list[str], dict | None]:
    """The final-audit attack names and their options."""
    if audit_epochs is not None and audit_epochs < 1:
        raise typer.BadParameter(f"--audit-epochs must be >= 1, got {audit_epochs}")
    audit_names = [a.strip() for a in audit.split(",") if a.strip()]
    if audit_repeats < 1:
        raise typer.BadParameter(f"--audit-repeats must be >= 1, got {audit_repeats}")
    learned = {"blackbox-nn", "whitebox", "shadow"}
    given = {**({"epochs": audit_epochs} if audit_epochs else {}), **({"repeats": audit_repeats}
                                                                      if audit_repeats > 1 else {})}
    return audit_names, ({a: given for a in audit_names if a in learned} if given else None)
