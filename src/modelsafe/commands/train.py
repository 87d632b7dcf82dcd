"""``modelsafe train``: train a target model into a resumable run folder (:func:`modelsafe.workflows.train_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe import distributed
from modelsafe.commands import _options as opt
from modelsafe.data import SplitSpec
from modelsafe.training import TrainConfig
from modelsafe.workflows import default_run_dir, train_run


@opt.with_groups(opt.TARGET, opt.TRAINING, opt.SPLIT, opt.RUNTIME)
def train(
    train: TrainConfig, split_spec: SplitSpec, dataset: str, model: str, width: float,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<dataset>-<model>-s<seed>).")] = None,
    overwrite: opt.OverwriteOpt = False,
    seed: opt.SeedOpt = 0,
    data_root: opt.DataRootOpt = None,
    download: opt.DownloadOpt = False,
    dataset_option: opt.DatasetOptionOpt = None,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Train a model on the members of a membership split; writes config.json, split.json, checkpoints,
    metrics.json and weights.safetensors. Re-running the same command resumes an interrupted run. Under
    `torchrun --nproc_per_node N -m modelsafe train ...` training is data-parallel; rank 0 writes and prints."""
    out = out or str(default_run_dir(dataset, model, f"s{seed}"))
    metrics = train_run(dataset, model, out=out, split=split_spec, train=train, width=width, seed=seed, device=device,
                        data_root=data_root, download=download, dataset_options=opt.parse_key_values(dataset_option),
                        overwrite=overwrite, progress=progress)
    if not distributed.is_main():
        return
    typer.echo(f"run folder: {out}" + (" (resumed)" if metrics["resumed"] else ""))
    typer.echo(f"test accuracy {metrics['test']['accuracy']:.4f} | validation accuracy "
               f"{metrics['validation']['accuracy']:.4f} | member (train) accuracy {metrics['members']['accuracy']:.4f}")
