"""The training recipe of a target: architecture, training settings, compression method and its options. A run
folder records it in ``config.json``; reference models for membership-inference attacks are trained with it,
so that the likelihood ratios compare the target with models made the same way (sparse and defended targets
included), not with plain dense ones."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import nn

from modelsafe.compress.methods import CompressOptions, compress, get_method
from modelsafe.data import Dataset, TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.references import FitTrainer, Trainer
from modelsafe.training import TrainConfig
from modelsafe.workflows.targets import init_model


@dataclass(frozen=True)
class Recipe:
    """How a target was made: ``model`` at ``width``, trained with ``train``; with ``method`` (a compression
    method's name) and its ``options``, compressed while training (``options.train`` is then the training)."""

    model: str
    width: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)
    method: str | None = None
    options: CompressOptions | None = None

    def __post_init__(self) -> None:
        if self.method is not None:
            get_method(self.method)
            if self.options is None:
                raise ModelsafeError(f"recipe with method {self.method!r} needs its CompressOptions")

    @classmethod
    def from_run_config(cls, config: dict) -> Recipe:
        """The recipe of a run folder's ``config.json`` (``modelsafe train`` or ``modelsafe compress``)."""
        if config.get("kind") == "compress":
            options = _compress_options(config.get("options", {}))
            return cls(config["model"], config.get("width", 1.0), options.train, config["method"], options)
        return cls(config["model"], config.get("width", 1.0), _train_config(config.get("train", {})))

    def model_factory(self, dataset: Dataset):
        """``factory(seed)`` -> a fresh model of this architecture for ``dataset``."""
        return lambda seed: init_model(self.model, dataset, self.width, seed)

    def trainer(self, device: str | torch.device | None = None) -> Trainer:
        """Trains a reference model the way the target was trained (:class:`FitTrainer` without a method)."""
        if self.method is None:
            return FitTrainer(self.train, device=device)
        if get_method(self.method).needs_split:
            raise ModelsafeError(f"reference models for {self.method!r} targets would need their own membership "
                                 "splits and simulated attackers, which modelsafe does not train yet; audit with "
                                 "attacks that need no reference models, or give a trainer")
        return MethodTrainer(self.method, self.options, device)

    def describe(self) -> dict:
        return {"model": self.model, "width": self.width, "method": self.method or "plain training"}


@dataclass(frozen=True)
class MethodTrainer:
    """Trains a reference model with compression method ``method`` and ``options`` (in place)."""

    method: str
    options: CompressOptions
    device: str | torch.device | None = None

    def __call__(self, model: nn.Module, data: TensorData, seed: int) -> None:
        result = compress(self.method, model, data, self.options, seed=seed, device=self.device, progress=False)
        if result.model is not model:
            model.load_state_dict(result.model.state_dict())


def _train_config(saved: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in known})


def _compress_options(saved: dict) -> CompressOptions:
    known = {f.name for f in fields(CompressOptions)}
    values = {k: v for k, v in saved.items() if k in known}
    values["train"] = _train_config(values.get("train", {}))
    return CompressOptions(**values)
