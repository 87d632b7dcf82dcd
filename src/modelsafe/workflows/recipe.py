"""The training recipe of a target: architecture, training settings, compression method and its options. A run
folder records it in ``config.json``; reference models for membership-inference attacks are trained with it,
so that the likelihood ratios compare the target with models made the same way (sparse and defended targets
included), not with plain dense ones."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from modelsafe.compress.methods import CompressOptions, compress, get_method
from modelsafe.data import Dataset, DatasetInfo, MembershipSplit, SplitSpec, TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.inputs import sample_digests
from modelsafe.privacy.references import FitTrainer, SubsetTrainer, Trainer
from modelsafe.training import TrainConfig
from modelsafe.utils import derive_seed, make_generator
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

    def trainer(self, device: str | torch.device | None = None, *, dataset: Dataset | None = None,
                split: MembershipSplit | None = None) -> Trainer:
        """Trains a reference model the way the target was trained: :class:`FitTrainer` without a method,
        :class:`MethodTrainer` with one. A method that simulates attackers (SafeCompress) needs the target's
        ``dataset`` and ``split``: its reference models are :class:`SplitMethodTrainer` objects, which draw each
        model's simulated attacker as the target's was drawn."""
        if self.method is None:
            return FitTrainer(self.train, device=device)
        if not get_method(self.method).needs_split:
            return MethodTrainer(self.method, self.options, device)
        if dataset is None or split is None:
            raise ModelsafeError(f"reference models for {self.method!r} targets simulate attackers as the target "
                                 "did: give the target's dataset= and split=")
        return SplitMethodTrainer.like(self.method, self.options, dataset, split, device)

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
        _take(model, result.model)

    def fingerprint(self) -> dict:
        return {"method": self.method, "options": self.options.to_dict()}


@dataclass(frozen=True, eq=False)
class SplitMethodTrainer(SubsetTrainer):
    """Trains a reference model with a method that simulates attackers (SafeCompress) as the target was made:
    the model's training samples are its members, ``known_fraction`` of them known to its simulated attacker,
    whose non-members (``reference_ratio`` times as many) come from the population samples the model is not
    trained on; ``validation`` (the target's validation set, never scored by an audit) selects candidates."""

    method: str
    options: CompressOptions
    info: DatasetInfo
    validation: TensorData
    known_fraction: float = 0.5
    reference_ratio: float = 1.0
    device: str | torch.device | None = None

    @classmethod
    def like(cls, method: str, options: CompressOptions, dataset: Dataset, split: MembershipSplit,
             device: str | torch.device | None = None) -> SplitMethodTrainer:
        """The trainer of ``method`` with the proportions and validation set of the target's ``split``."""
        validation = split.data(dataset, "validation")
        if len(validation) == 0:
            raise ModelsafeError(f"reference models for {method!r} targets select candidates on a validation set, "
                                 "but the target's split has none")
        known, reference = split["attack_known_members"].numel(), split["attack_reference"].numel()
        return cls(method, options, dataset.info, validation, split.spec.known_fraction, reference / known, device)

    def train_subset(self, model: nn.Module, population: TensorData, indices: torch.Tensor, seed: int) -> None:
        dataset, split = self.reference_split(population, indices, seed)
        result = compress(self.method, model, split.data(dataset, "members"), self.options, seed=seed,
                          device=self.device, progress=False, dataset=dataset, split=split)
        _take(model, result.model)

    def reference_split(self, population: TensorData, indices: torch.Tensor,
                        seed: int) -> tuple[Dataset, MembershipSplit]:
        """A dataset (train: ``population``, test: the validation set) and a split whose members are
        ``indices``, with attacker-known members and non-members drawn as described above."""
        n = len(population)
        gen = make_generator(derive_seed(seed, "reference-split"))
        inside = torch.zeros(n, dtype=torch.bool)
        inside[indices] = True
        members = indices[torch.randperm(indices.numel(), generator=gen)]
        outside = (~inside).nonzero().squeeze(1)
        outside = outside[torch.randperm(outside.numel(), generator=gen)]
        n_known = max(1, min(members.numel() - 1, round(self.known_fraction * members.numel())))
        n_ref = max(1, min(outside.numel() - 1, round(self.reference_ratio * n_known)))
        n_eval = min(members.numel() - n_known, outside.numel() - n_ref)
        if members.numel() < 2 or n_eval < 1:
            raise ModelsafeError(f"a {self.method!r} reference model needs at least 2 training samples and 2 "
                                 f"samples outside them; it has {members.numel()} and {outside.numel()}")
        val_ids = torch.arange(n, n + len(self.validation))
        sets = {"members": members, "validation": val_ids, "test": torch.zeros(0, dtype=torch.long),
                "attack_known_members": members[:n_known], "eval_members": members[n_known:],
                "attack_reference": outside[:n_ref], "eval_nonmembers": outside[n_ref:n_ref + n_eval],
                "population": torch.zeros(0, dtype=torch.long)}
        spec = SplitSpec(members=members.numel(), validation=val_ids.numel(), known_fraction=self.known_fraction,
                         reference=n_ref, eval_nonmembers=n_eval, population=0)
        split = MembershipSplit(self.info.name, n, len(self.validation), seed, spec, sets)
        split.validate()
        return Dataset(self.info, population, self.validation), split

    def fingerprint(self) -> dict:
        return {"method": self.method, "options": self.options.to_dict(), "known_fraction": self.known_fraction,
                "reference_ratio": self.reference_ratio,
                "validation": hashlib.sha256(b"".join(sample_digests(self.validation))).hexdigest()}


def _take(model: nn.Module, trained: nn.Module) -> None:
    """Copy ``trained``'s weights into ``model`` when the method returned another module."""
    if trained is not model:
        model.load_state_dict(trained.state_dict())


def _train_config(saved: dict) -> TrainConfig:
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in known})


def _compress_options(saved: dict) -> CompressOptions:
    known = {f.name for f in fields(CompressOptions)}
    values = {k: v for k, v in saved.items() if k in known}
    values["train"] = _train_config(values.get("train", {}))
    return CompressOptions(**values)
