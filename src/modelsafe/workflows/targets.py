"""Target models: a fresh model by name with a seed, a trained one rebuilt from its run folder, and the default
run-folder names.

A run folder's ``config.json`` records everything needed to rebuild the model and its data: dataset name,
model name and width, split recipe and sizes, training settings and seed."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from modelsafe.data import Dataset, MembershipSplit, load_dataset
from modelsafe.models import create_model_for
from modelsafe.report.run import RunFolder
from modelsafe.utils import resolve_device


def init_model(model: str, data: Dataset, width: float, seed: int, **kwargs) -> nn.Module:
    """A freshly initialised model (extra keyword arguments go to ``create_model_for``). Module constructors draw
    from the global generator, so it is forked and seeded here: the same seed gives the same weights, and the
    caller's global RNG state is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model_for(model, data.info, width=width, **kwargs)


def load_target(run_dir: str | os.PathLike, device: str | torch.device | None = None,
                data_root: str | None = None) -> tuple[nn.Module, Dataset, MembershipSplit, dict]:
    """Rebuild a trained target from its run folder: (model in eval mode, dataset, split, config)."""
    run = RunFolder(run_dir)
    config = run.config()
    split = run.load_split()
    data = load_dataset(config["dataset"], root=data_root, **config.get("dataset_options", {}))
    split.check_dataset(data)
    net = create_model_for(config["model"], data.info, width=config.get("width", 1.0))
    run.load_weights(net)
    net.to(resolve_device(device)).eval()
    return net, data, split, config


def default_run_dir(*parts: str) -> Path:
    return Path("runs") / "-".join(str(p).replace("/", "_").replace(":", "_") for p in parts)
