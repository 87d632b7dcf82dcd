"""``train_run``: train a target model on the members of a membership split into a resumable run folder."""

from __future__ import annotations

import os
import time
from dataclasses import asdict

import torch
from torch import nn

from modelsafe import distributed
from modelsafe.data import Dataset, MembershipSplit, SplitSpec, load_dataset
from modelsafe.report.run import RunFolder
from modelsafe.training import TrainConfig, evaluate, fit
from modelsafe.utils import resolve_device
from modelsafe.workflows.targets import init_model


def train_run(dataset: str | Dataset, model: str, *, out: str | os.PathLike, split: SplitSpec | str = "small",
              train: TrainConfig | None = None, width: float = 1.0, seed: int = 0,
              device: str | torch.device | None = None, data_root: str | None = None, download: bool = False,
              dataset_options: dict | None = None, overwrite: bool = False, progress: bool = True) -> dict:
    """Train ``model`` on the members of a membership split of ``dataset`` and write a run folder at ``out``.

    Re-running with the same arguments resumes from the last epoch's checkpoint. Returns the final metrics
    (test and validation accuracy, train accuracy on the members, wall time). Under ``torchrun`` training is
    data-parallel (:func:`modelsafe.training.fit`); rank 0 alone claims and writes the run folder, and the
    other ranks return only ``{"resumed": ...}``."""
    from modelsafe._checks import check_positive, check_seed

    check_seed("seed", seed)
    check_positive("width", width)
    dev = resolve_device(device)
    dataset_options = dict(dataset_options or {})
    data = (dataset if isinstance(dataset, Dataset)
            else load_dataset(dataset, root=data_root, download=download, **dataset_options))
    train = train or TrainConfig()
    split_obj = MembershipSplit.create(data, split, seed=seed)
    net = init_model(model, data, width, seed)  # a bad model name or width fails here, before any folder exists
    config = {"kind": "train", "dataset": data.info.name, "dataset_options": dataset_options, "model": model,
              "width": width, "seed": seed, "split": asdict(split_obj.spec), "train": asdict(train)}
    run = RunFolder(out)
    if not distributed.is_main():
        return _train_helper(run, net, data, train, seed, dev)
    with run.open(config, split_obj, overwrite=overwrite) as resumed:
        distributed.broadcast_object(resumed)  # the folder is claimed: the other ranks may read it now
        if resumed:
            split_obj = run.load_split()  # the saved split is the truth for a resumed run
        metrics = _train_in(run, net, data, split_obj, train, seed, dev, progress)
        metrics["resumed"] = resumed
        run.save_weights(net)
        run.save_metrics(metrics)
    return metrics


def _train_helper(run: RunFolder, net: nn.Module, data: Dataset, train: TrainConfig, seed: int,
                  dev: torch.device) -> dict:
    """A rank other than 0 under ``torchrun``: wait until rank 0 has claimed the run folder, take its split, and
    train alongside it; it writes nothing."""
    resumed = distributed.broadcast_object()
    split_obj = run.load_split()
    fit(net, split_obj.data(data, "members"), train, seed=seed, device=dev, run_dir=run.path, progress=False)
    return {"resumed": resumed}


def _train_in(run: RunFolder, net: nn.Module, data: Dataset, split_obj: MembershipSplit, train: TrainConfig,
              seed: int, dev: torch.device, progress: bool) -> dict:
    members = split_obj.data(data, "members")
    validation = split_obj.data(data, "validation")
    start = time.perf_counter()
    history = fit(net, members, train, val_data=validation, seed=seed, device=dev, run_dir=run.path,
                  progress=progress)
    return {
        "test": evaluate(net, data.test, device=dev),
        "validation": evaluate(net, validation, device=dev),
        "members": evaluate(net, members, device=dev),
        "history": history,
        "seconds_this_session": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
