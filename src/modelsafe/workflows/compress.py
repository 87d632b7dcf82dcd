"""``compress_run``: train a compressed model with a method from the compression registry into a resumable run
folder, export it as a packed sparse file and measure its real size."""

from __future__ import annotations

import os
from dataclasses import asdict

import torch

from modelsafe import distributed
from modelsafe.compress.methods import CompressOptions, check_extras, check_method
from modelsafe.compress.methods import compress as run_method
from modelsafe.data import Dataset, MembershipSplit, SplitSpec, get_recipe, load_dataset
from modelsafe.report.run import RunFolder
from modelsafe.sparse.export import export_sparse
from modelsafe.training import evaluate
from modelsafe.utils import resolve_device
from modelsafe.workflows.targets import init_model

SPARSE_FILE = "weights.sparse.safetensors"


def compress_run(method: str, dataset: str | Dataset, model: str, *, out: str | os.PathLike,
                 options: CompressOptions | None = None, split: SplitSpec | str = "safecompress", width: float = 1.0,
                 seed: int = 0, device: str | torch.device | None = None, data_root: str | None = None,
                 download: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    """Compress ``model`` with ``method`` while training it on the members of a membership split of ``dataset``
    and write a run folder at ``out`` (config.json, split.json, checkpoints, metrics.json, weights.safetensors and
    the packed weights.sparse.safetensors). Bad names and options fail before any data is loaded or written.
    Re-running with the same arguments resumes. Returns the metrics: test and validation accuracy, parameters,
    FLOPs, ``export`` (dense and sparse bytes, ratio) and ``resumed``.

    Under ``torchrun`` the training is data-parallel (:func:`modelsafe.training.fit`; SafeCompress scores its
    candidates on different ranks, see :class:`~modelsafe.compress.safecompress.SafeCompress`); rank 0 alone
    claims and writes the run folder, and the other ranks return only ``{"resumed": ...}``."""
    options = options or CompressOptions()
    check_method(method, options)
    check_extras([method], options)
    spec = get_recipe(split) if isinstance(split, str) else split
    dev = distributed.local_device(resolve_device(device))
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, root=data_root, download=download)
    split_obj = MembershipSplit.create(data, spec, seed=seed)
    net = init_model(model, data, width, seed)  # a bad model or width fails here, before any folder exists
    run = RunFolder(out)
    run_config = {"kind": "compress", "method": method, "dataset": data.info.name, "model": model, "width": width,
                  "seed": seed, "split": asdict(split_obj.spec), "options": options.to_dict()}
    if not distributed.is_main():
        return _compress_helper(run, method, net, data, options, seed, dev)
    with run.open(run_config, split_obj, overwrite=overwrite) as resumed:
        distributed.broadcast_object(resumed)  # the folder is claimed: the other ranks may read it now
        if resumed:
            split_obj = run.load_split()
        metrics = _compress_in(run, method, net, data, split_obj, options, seed, dev, progress)
        metrics["resumed"] = resumed
        run.save_metrics(metrics)
    return metrics


def _compress_helper(run: RunFolder, method: str, net: torch.nn.Module, data: Dataset, options: CompressOptions,
                     seed: int, dev: torch.device) -> dict:
    """A rank other than 0 under ``torchrun``: wait until rank 0 has claimed the run folder, take its split and
    compress alongside it; it writes nothing."""
    resumed = distributed.broadcast_object()
    split_obj = run.load_split()
    run_method(method, net, split_obj.data(data, "members"), options, seed=seed, device=dev, run_dir=run.path,
               progress=False, dataset=data, split=split_obj)
    return {"resumed": resumed}


def _compress_in(run: RunFolder, method: str, net: torch.nn.Module, data: Dataset, split_obj: MembershipSplit,
                 options: CompressOptions, seed: int, dev: torch.device, progress: bool) -> dict:
    """Compress ``net`` inside the open run folder; returns the metrics."""
    net, info = run_method(method, net, split_obj.data(data, "members"), options, seed=seed, device=dev,
                           run_dir=run.path, progress=progress, dataset=data, split=split_obj)
    run.save_weights(net)
    report = run.write_checked(SPARSE_FILE, lambda path: export_sparse(net, path, metadata={"method": method}))
    return {"test": evaluate(net, data.test, device=dev),
            "validation": evaluate(net, split_obj.data(data, "validation"), device=dev),
            **info, "export": {"dense_bytes": report.dense_bytes, "sparse_bytes": report.sparse_bytes,
                               "ratio": report.ratio, "layouts": report.layouts}}
