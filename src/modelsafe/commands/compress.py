"""``modelsafe compress``: train a compressed model with a method from the compression registry, export it as a
packed sparse file and report its real size (:func:`modelsafe.workflows.compress_run`)."""

from __future__ import annotations

from typing import Annotated

import typer

from modelsafe import distributed
from modelsafe.commands import _options as opt
from modelsafe.compress.methods import CompressOptions, list_methods
from modelsafe.data import SplitSpec
from modelsafe.training import TrainConfig
from modelsafe.workflows import compress_run, default_run_dir
from modelsafe.workflows.compress import SPARSE_FILE


@opt.with_groups(opt.TARGET, opt.TRAINING, opt.SPLIT, opt.RUNTIME)
def compress(
    train: TrainConfig, split_spec: SplitSpec, dataset: str, model: str, width: float,
    method: Annotated[str, typer.Option(help="Compression method: " + ", ".join(list_methods())
                                        + ".")] = "rigl",
    density: Annotated[float, typer.Option(help="Fraction of conv/linear weights kept, in (0, 1].")] = 0.05,
    distribution: Annotated[str, typer.Option(help="Per-layer densities: erk, er or uniform.")] = "erk",
    update_interval: Annotated[int, typer.Option(help="Optimizer steps between mask updates / pruning steps.")] = 100,
    drop_fraction: Annotated[float, typer.Option(help="Initial share of active weights replaced per update "
                                                      "(cosine decay to 0.005).")] = 0.5,
    end: Annotated[float, typer.Option(help="Fraction of training after which mask updates stop (itop: 1.0).")] = 0.75,
    dense_first: Annotated[bool, typer.Option("--dense-first/--sparse-first",
                                              help="Keep the first layer dense.")] = False,
    finetune_epochs: Annotated[int | None, typer.Option(help="oneshot: fine-tuning epochs (default: half of "
                                                                "--epochs).")] = None,
    option: opt.MethodOptionOpt = None,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<dataset>-<model>-<method>-"
                                                    "d<density>-s<seed>).")] = None,
    overwrite: opt.OverwriteOpt = False,
    seed: opt.SeedOpt = 0,
    data_root: opt.DataRootOpt = None,
    download: opt.DownloadOpt = False,
    device: str = "auto", progress: bool = True, config: None = None,
) -> None:
    """Compress a model while training it (dense, static, set, rigl, itop, gmp, oneshot, ...). Writes config.json,
    split.json, checkpoints, metrics.json, weights.safetensors and the packed weights.sparse.safetensors, and
    prints dense bytes, sparse bytes and the ratio. Re-running the same command resumes an interrupted run. Under
    `torchrun --nproc_per_node N -m modelsafe compress ...` training is data-parallel (SafeCompress scores its
    candidates on different ranks); rank 0 writes and prints. DP-SGD runs in one process only."""
    options = CompressOptions(density=density, train=train, distribution=distribution,
                              update_interval=update_interval, drop_fraction=drop_fraction, end=end,
                              dense_first=dense_first, finetune_epochs=finetune_epochs,
                              extra=opt.parse_method_options(option))
    out = out or str(default_run_dir(dataset, model, method, f"d{density:g}", f"s{seed}"))
    metrics = compress_run(method, dataset, model, out=out, options=options, split=split_spec, width=width,
                           seed=seed, device=device, data_root=data_root, download=download, overwrite=overwrite,
                           progress=progress)
    if not distributed.is_main():
        return
    typer.echo(f"run folder: {out}" + (" (resumed)" if metrics["resumed"] else ""))
    params, flops, export = metrics["params"], metrics["flops"], metrics["export"]
    typer.echo(f"{method}: test accuracy {metrics['test']['accuracy']:.4f} | non-zero parameters "
               f"{params['nonzero']:,} of {params['total']:,} | FLOPs/sample {flops['sparse']:,} of {flops['dense']:,}")
    typer.echo(f"dense bytes {export['dense_bytes']:,} | sparse bytes {export['sparse_bytes']:,} | "
               f"ratio {export['ratio']:.2f}x ({out}/{SPARSE_FILE})")
