"""Run folders: everything a run produces, in one directory that can be resumed and reported.

Layout: ``modelsafe.json`` (the marker: modelsafe wrote this folder, and the list of what it wrote, with the
SHA-256 of each weights file), ``split.json`` (the membership split), ``config.json`` (what was asked;
written after the split, so a folder with a config always has its split), ``checkpoint/`` (resume state,
written every epoch), ``metrics.json`` (final figures), ``weights.safetensors`` (final weights). While a run
writes the folder it holds ``.modelsafe.lock``. See :mod:`modelsafe.storage.folder` for the ownership rules."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from modelsafe.data.split import MembershipSplit
from modelsafe.errors import ModelsafeError
from modelsafe.storage.folder import OwnedFolder
from modelsafe.storage.io import load_weights, save_weights, write_json
from modelsafe.storage.manifest import DamagedFileError, verify_digest
from modelsafe.storage.readers import read_json_object, require

# Options that change how a run executes but not what it computes; they may differ on resume.
VOLATILE_KEYS = frozenset({"device", "progress", "out", "overwrite", "config", "data_root", "download"})
# Everything a training or compression run may write into its folder (``--overwrite`` removes these only).
RUN_ENTRIES = ("config.json", "split.json", "metrics.json", "weights.safetensors", "weights.sparse.safetensors",
               "checkpoint", "checkpoint.old", "checkpoint.tmp", "dense", "finetune", "selection.json", "audit")
RUN_KIND = "run"


class RunFolder:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.owned: OwnedFolder | None = None

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    def exists(self) -> bool:
        return (self.path / "config.json").is_file()

    @contextmanager
    def open(self, config: dict, split: MembershipSplit, overwrite: bool = False) -> Iterator[bool]:
        """Claim the folder for ``config`` (locked until the block ends) and yield True when an existing run
        with the same config is resumed (:meth:`load_split` then gives its split); a different config in the
        same folder is an error unless ``overwrite``."""
        self.owned = OwnedFolder(self.path, RUN_KIND, RUN_ENTRIES)
        self.owned.claim(overwrite=overwrite)
        try:
            resumed = self._start(json.loads(json.dumps(config, default=str)), split)
            yield resumed
        except BaseException:
            self.owned.release(failed=True)
            raise
        else:
            self.owned.release()
        finally:
            self.owned = None

    def _start(self, config: dict, split: MembershipSplit) -> bool:
        if self.exists():
            try:
                old = read_json_object(self.path / "config.json", "run config")
            except DamagedFileError as exc:
                raise ModelsafeError(f"{exc}; pass --overwrite to start this run afresh") from None
            diff = {k for k in set(old) | set(config) if k not in VOLATILE_KEYS and old.get(k) != config.get(k)}
            if diff:
                raise ModelsafeError(
                    f"run folder {self.path} holds a run with a different config (differs in: "
                    f"{', '.join(sorted(diff))}); choose another --out or pass --overwrite")
            if (self.path / "split.json").is_file():
                return True
        split.save(self.path / "split.json")  # the split first: config.json marks a complete start
        write_json(self.path / "config.json", config)
        return False

    def config(self) -> dict:
        """The run's config, checked for the fields every reader needs."""
        if not self.path.is_dir():
            raise ModelsafeError(f"run folder {self.path} does not exist")
        if not self.exists():
            raise ModelsafeError(f"{self.path} is not a modelsafe run folder (no config.json)")
        path = self.path / "config.json"
        config = read_json_object(path, "run config")
        require(config, "dataset", str, path)
        require(config, "model", str, path)
        width = require(config, "width", (int, float), path, default=1.0)
        if not width > 0:
            raise DamagedFileError(f"{path}: field 'width' must be > 0, got {width!r}")
        require(config, "dataset_options", dict, path, default={})
        require(config, "train", dict, path, default={})
        return config

    def load_split(self) -> MembershipSplit:
        return MembershipSplit.load(self.path / "split.json")

    def save_metrics(self, metrics: dict) -> None:
        write_json(self.path / "metrics.json", metrics)

    def save_weights(self, model: torch.nn.Module, name: str = "weights.safetensors") -> Path:
        if self.owned is None:
            raise ModelsafeError(f"run folder {self.path} is not open for writing")
        return self.owned.write_checked(name, lambda path: save_weights(path, model))

    def write_checked(self, name: str, write):
        """``write(path)`` for a weights-like entry whose SHA-256 is recorded (see :class:`OwnedFolder`)."""
        if self.owned is None:
            raise ModelsafeError(f"run folder {self.path} is not open for writing")
        return self.owned.write_checked(name, write)

    def verify(self, name: str) -> None:
        """Raise when ``name`` no longer matches the SHA-256 recorded when it was written."""
        verify_digest(self.path, name, "re-run the command that wrote this run folder (it resumes from the "
                                       "last checkpoint and writes the file again)")

    def load_weights(self, model: torch.nn.Module, name: str = "weights.safetensors") -> torch.nn.Module:
        self.verify(name)
        return load_weights(self.path / name, model)
