"""``modelsafe compress``: train a compressed model with a method from the compression registry, export it as a
packed sparse file and report its real size."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from modelsafe.commands._options import (
    ConfigOpt,
    DataRootOpt,
    DeviceOpt,
    DownloadOpt,
    MethodOptionOpt,
    ProgressOpt,
    SeedOpt,
    parse_method_options,
)
from modelsafe.compress.methods import CompressOptions, check_extras, check_method, list_methods
from modelsafe.compress.methods import compress as run_method
from modelsafe.data import MembershipSplit, get_recipe, load_dataset
from modelsafe.report.run import RunFolder
from modelsafe.sparse.export import export_sparse
from modelsafe.targets import default_run_dir, init_model
from modelsafe.training import TrainConfig, evaluate
from modelsafe.utils import resolve_device

SPARSE_FILE = "weights.sparse.safetensors"


def compress(
    method: Annotated[str, typer.Option(help="Compression method: " + ", ".join(list_methods())
                                        + ".")] = "rigl",
    dataset: Annotated[str, typer.Option(help="Dataset name (see `modelsafe datasets`).")] = "fashion-mnist",
    model: Annotated[str, typer.Option(help="Model name: cnn, mlp, vgg11, vgg16, resnet18, ...")] = "cnn",
    width: Annotated[float, typer.Option(help="Width multiplier of the model.")] = 1.0,
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
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Base learning rate.")] = 0.05,
    optimizer: Annotated[str, typer.Option(help="sgd, adam or adamw.")] = "sgd",
    momentum: Annotated[float, typer.Option(help="SGD momentum.")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="Weight decay.")] = 5e-4,
    schedule: Annotated[str, typer.Option(help="LR schedule: cosine, multistep or constant.")] = "cosine",
    augment: Annotated[str, typer.Option(help="none, flip or crop-flip.")] = "none",
    split: Annotated[str, typer.Option(help="Membership split recipe whose members are trained on: "
                                            "safecompress (all train samples) or small.")] = "safecompress",
    members: Annotated[int | None, typer.Option(help="Override the recipe's member count.")] = None,
    validation: Annotated[int | None, typer.Option(help="Override the recipe's validation size.")] = None,
    option: MethodOptionOpt = None,
    out: Annotated[str | None, typer.Option(help="Run folder (default runs/<dataset>-<model>-<method>-"
                                                    "d<density>-s<seed>).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run folder that holds a different run.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    progress: ProgressOpt = True,
    config: ConfigOpt = None,
) -> None:
    """Compress a model while training it (dense, static, set, rigl, itop, gmp, oneshot, ...). Writes config.json,
    split.json, checkpoints, metrics.json, weights.safetensors and the packed weights.sparse.safetensors, and
    prints dense bytes, sparse bytes and the ratio. Re-running the same command resumes an interrupted run."""
    del config
    train = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                        weight_decay=weight_decay, schedule=schedule, augment=augment)
    options = CompressOptions(density=density, train=train, distribution=distribution,
                              update_interval=update_interval, drop_fraction=drop_fraction, end=end,
                              dense_first=dense_first, finetune_epochs=finetune_epochs,
                              extra=parse_method_options(option)).validate()
    check_method(method, options)  # bad names and options fail here, before any data is loaded or written
    check_extras([method], options)
    spec = get_recipe(split, members=members, validation=validation)
    dev = resolve_device(device)
    data = load_dataset(dataset, root=data_root, download=download)
    split_obj = MembershipSplit.create(data, spec, seed=seed)
    net = init_model(model, data, width, seed)  # a bad model or width fails here, before any folder exists
    out = out or str(default_run_dir(dataset, model, method, f"d{density:g}", f"s{seed}"))
    run = RunFolder(out)
    run_config = {"kind": "compress", "method": method, "dataset": data.info.name, "model": model, "width": width,
                  "seed": seed, "split": asdict(split_obj.spec), "options": options.to_dict()}
    with run.open(run_config, split_obj, overwrite=overwrite) as resumed:
        if resumed:
            split_obj = run.load_split()
        metrics, report = _compress_in(run, method, net, data, split_obj, options, seed, dev, progress)
        metrics["resumed"] = resumed
        run.save_metrics(metrics)
    typer.echo(f"run folder: {out}" + (" (resumed)" if resumed else ""))
    params, flops = metrics["params"], metrics["flops"]
    typer.echo(f"{method}: test accuracy {metrics['test']['accuracy']:.4f} | non-zero parameters "
               f"{params['nonzero']:,} of {params['total']:,} | FLOPs/sample {flops['sparse']:,} of {flops['dense']:,}")
    typer.echo(f"dense bytes {report.dense_bytes:,} | sparse bytes {report.sparse_bytes:,} | "
               f"ratio {report.ratio:.2f}x ({run.file(SPARSE_FILE)})")


def _compress_in(run: RunFolder, method: str, net, data, split_obj: MembershipSplit, options: CompressOptions,
                 seed: int, dev, progress: bool):
    """Compress ``net`` inside the open run folder; returns (metrics, export report)."""
    pool = data.pool()
    net, info = run_method(method, net, split_obj.data(data, "members", pool), options, seed=seed, device=dev,
                           run_dir=run.path, progress=progress, dataset=data, split=split_obj)
    run.save_weights(net)
    report = run.write_checked(SPARSE_FILE, lambda path: export_sparse(net, path, metadata={"method": method}))
    metrics = {"test": evaluate(net, data.test, device=dev),
               "validation": evaluate(net, split_obj.data(data, "validation", pool), device=dev),
               **info, "export": {"dense_bytes": report.dense_bytes, "sparse_bytes": report.sparse_bytes,
                                  "ratio": report.ratio, "layouts": report.layouts}}
    return metrics, report
