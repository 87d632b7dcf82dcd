"""``modelsafe train``: train a target model into a resumable run folder."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands._options import (
    ConfigOpt,
    DataRootOpt,
    DatasetOptionOpt,
    DeviceOpt,
    DownloadOpt,
    ProgressOpt,
    SeedOpt,
    parse_key_values,
)
from modelsafe.data.split import get_recipe
from modelsafe.targets import default_run_dir, train_target
from modelsafe.training import TrainConfig


def train(
    dataset: Annotated[str, typer.Option(help="Dataset name (see `modelsafe datasets`).")] = "fashion-mnist",
    model: Annotated[str, typer.Option(help="Model name: cnn, mlp, vgg11, vgg16, resnet18, text, timm:<arch>.")] = "cnn",
    width: Annotated[float, typer.Option(help="Width multiplier of the model.")] = 1.0,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.05,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or adamw.")] = "sgd",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="L2 weight decay.")] = 5e-4,
    schedule: Annotated[str, typer.Option(help="LR schedule: cosine, multistep or constant.")] = "cosine",
    augment: Annotated[str, typer.Option(help="none, flip or crop-flip.")] = "none",
    split: Annotated[str, typer.Option(help="Membership split recipe: safecompress (all train samples are "
                                            "members) or small (2,500 members).")] = "safecompress",
    members: Annotated[int | None, typer.Option(help="Override the recipe's member count.")] = None,
    validation: Annotated[int | None, typer.Option(help="Override the recipe's validation size.")] = None,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<dataset>-<model>-s<seed>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run folder that holds a different run.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    dataset_option: DatasetOptionOpt = None,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Train a model on the members of a membership split; writes config.json, split.json, checkpoints,
    metrics.json and weights.safetensors. Re-running the same command resumes an interrupted run."""
    del config
    spec = get_recipe(split, members=members, validation=validation)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                      weight_decay=weight_decay, schedule=schedule, augment=augment).validate()
    out = out or str(default_run_dir(dataset, model, f"s{seed}"))
    metrics = train_target(dataset, model, out=out, split=spec, train=cfg, width=width, seed=seed, device=device,
                           data_root=data_root, download=download,
                           dataset_options=parse_key_values(dataset_option), overwrite=overwrite, progress=progress)
    typer.echo(f"run folder: {out}" + (" (resumed)" if metrics["resumed"] else ""))
    typer.echo(f"test accuracy {metrics['test']['accuracy']:.4f} | validation accuracy "
               f"{metrics['validation']['accuracy']:.4f} | member (train) accuracy {metrics['members']['accuracy']:.4f}")
