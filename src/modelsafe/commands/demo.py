"""``modelsafe demo``: the main job, end to end on Fashion-MNIST (digits when Fashion-MNIST is absent)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe.commands._options import DeviceOpt, ProgressOpt, SeedOpt
from modelsafe.data.files import find_files
from modelsafe.data.idx import IDX_FILES
from modelsafe.targets import train_target
from modelsafe.training import TrainConfig


def demo(
    out: Annotated[str, typer.Option(help="Folder for the demo's runs and report.")] = "runs/demo",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 3,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    progress: ProgressOpt = True,
) -> None:
    """Train a CNN on Fashion-MNIST and print its test accuracy."""
    if find_files("fashion-mnist", IDX_FILES, None) is not None:
        dataset, model = "fashion-mnist", "cnn"
    else:
        typer.echo("Fashion-MNIST not found (apt-get install dataset-fashion-mnist); using scikit-learn digits.")
        dataset, model = "digits", "mlp"
    metrics = train_target(dataset, model, out=f"{out}/{dataset}-{model}", split="safecompress", train=TrainConfig(epochs=epochs), seed=seed,
                           device=device, progress=progress)
    typer.echo(f"{dataset} / {model}: test accuracy {metrics['test']['accuracy']:.4f}")
