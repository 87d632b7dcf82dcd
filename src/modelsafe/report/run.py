"""Run folders: everything a run produces, in one directory that can be resumed and reported.

Layout: ``config.json`` (what was asked), ``split.json`` (the membership split), ``checkpoint/`` (resume
state, written every epoch), ``metrics.json`` (final figures), ``weights.safetensors`` (final weights)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError
from modelsafe.report.io import load_weights, read_json, save_weights, write_json

# Options that change how a run executes but not what it computes; they may differ on resume.
VOLATILE_KEYS = frozenset({"device", "progress", "out", "overwrite", "config", "data_root", "download"})


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    def start(self, config: dict, overwrite: bool = False) -> bool:
        """Create the folder for ``config``. Returns True when an existing run with the same config is being
        resumed; a different config in the same folder is an error unless ``overwrite``."""
        config = json.loads(json.dumps(config, default=str))  # compare as saved (tuples become lists, ...)
        if self.exists():
            if overwrite:
                shutil.rmtree(self.path)
            else:
                old = read_json(self.path / "config.json")
                diff = {k for k in set(old) | set(config) if k not in VOLATILE_KEYS and old.get(k) != config.get(k)}
                if diff:
                    raise ModelsafeError(
                        f"run folder {self.path} holds a run with a different config (differs in: "
                        f"{', '.join(sorted(diff))}); choose another --out or pass --overwrite")
                return True
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.path / "config.json", config)
        return False

    def config(self) -> dict:
        if not self.exists():
            raise ModelsafeError(f"{self.path} is not a modelsafe run folder (no config.json)")
        return read_json(self.path / "config.json")

    def save_split(self, split: MembershipSplit) -> None:
        split.save(self.path / "split.json")

    def load_split(self) -> MembershipSplit:
        return MembershipSplit.load(self.path / "split.json")

    def save_metrics(self, metrics: dict) -> None:
        write_json(self.path / "metrics.json", metrics)

    def save_weights(self, model: torch.nn.Module, name: str = "weights.safetensors") -> Path:
        return save_weights(self.path / name, model)

    def load_weights(self, model: torch.nn.Module, name: str = "weights.safetensors") -> torch.nn.Module:
        return load_weights(self.path / name, model)
