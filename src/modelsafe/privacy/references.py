"""Reference (a.k.a. shadow) models: k models like the target, each trained on a random subset of population
data the target never saw. The shadow attack trains its attack model on them (in = their training subset,
out = the rest); LiRA and RMIA use them as "OUT" models. One :class:`ReferenceModels` can serve all three."""

from __future__ import annotations

import hashlib
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from modelsafe import distributed
from modelsafe._checks import check_positive_int
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.inputs import Samples, as_samples, sample_digests, target_device, target_logits
from modelsafe.storage.io import load_weights, save_weights, write_json
from modelsafe.training import TrainConfig, fit
from modelsafe.utils import derive_seed, make_generator

ModelFactory = Callable[[int], nn.Module]
"""``factory(seed)`` returns a freshly initialised model of the target's architecture (deterministic in seed),
e.g. ``lambda s: modelsafe.workflows.init_model("cnn", dataset, 1.0, s)``."""


@dataclass(frozen=True)
class FitTrainer:
    """Trains a reference model with :func:`modelsafe.training.fit` (give it the target's training settings)."""

    config: TrainConfig = field(default_factory=TrainConfig)
    device: str | torch.device | None = None

    def __call__(self, model: nn.Module, data: TensorData, seed: int) -> None:
        fit(model, data, self.config, seed=seed, device=self.device, progress=False)


Trainer = Callable[[nn.Module, TensorData, int], None]
"""``trainer(model, data, seed)`` trains ``model`` in place on ``data``; :class:`FitTrainer` is the default.
A trainer that also needs the samples a model is *not* trained on is a :class:`SubsetTrainer`."""


class SubsetTrainer(ABC):
    """A trainer given the whole population and the indices a reference model trains on, for recipes that use
    the samples outside them too (SafeCompress's simulated attacker draws its non-members there).
    ``fingerprint()`` is its part of the reference-model store's key."""

    @abstractmethod
    def train_subset(self, model: nn.Module, population: TensorData, indices: torch.Tensor, seed: int) -> None:
        """Train ``model`` in place on ``population.subset(indices)``; (n,) int64 ``indices``."""

    @abstractmethod
    def fingerprint(self) -> dict:
        """A JSON-able description of the recipe (what makes two sets of reference models interchangeable)."""

    def __call__(self, model: nn.Module, data: TensorData, seed: int) -> None:
        raise ModelsafeError(f"{type(self).__name__} trains on a subset of a population: call train_subset")


@dataclass
class ReferenceModels:
    """``models[j]`` was trained on ``population.subset(in_masks[j].nonzero())``; ``in_masks`` is (k, N) bool.
    ``train_seconds``: how long training them took (None when loaded from disk)."""

    models: list[nn.Module]
    population: TensorData
    in_masks: torch.Tensor
    train_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ModelsafeError("need at least one reference model")
        if tuple(self.in_masks.shape) != (len(self.models), len(self.population)):
            raise ModelsafeError(f"in_masks must have shape ({len(self.models)}, {len(self.population)}), got "
                                 f"{tuple(self.in_masks.shape)}")

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def train(cls, population: Samples, model_factory: ModelFactory, trainer: Trainer | None = None, *,
              num_models: int = 4, train_size: int | None = None, seed: int = 0, progress: bool = False,
              store: StoreSlot | None = None) -> ReferenceModels:
        """Train ``num_models`` models, each on its own random ``train_size`` samples of ``population``
        (default: half of it, as in LiRA/RMIA). Model j is built by ``model_factory(seed_j)``. With ``store``,
        each model is written there as it finishes and models already there are loaded, not trained again."""
        population = as_samples(population, "population")
        check_positive_int("num_models", num_models)
        n = len(population)
        train_size = n // 2 if train_size is None else train_size
        if not isinstance(train_size, int) or not 1 <= train_size < n:
            raise ModelsafeError(f"reference train_size must be an integer in [1, {n - 1}] (population has {n} "
                                 f"samples), got {train_size!r}")
        gen = make_generator(derive_seed(seed, "reference-subsets"))
        subsets = [torch.randperm(n, generator=gen)[:train_size] for _ in range(num_models)]
        return cls._train_subsets(population, subsets, model_factory, trainer, seed, progress, store)

    @classmethod
    def train_balanced(cls, population: Samples, model_factory: ModelFactory, trainer: Trainer | None = None, *,
                       num_models: int = 16, seed: int = 0, progress: bool = False,
                       store: StoreSlot | None = None) -> ReferenceModels:
        """The online design of LiRA and RMIA: ``num_models`` (even) models such that every sample of
        ``population`` is in the training set of exactly half of them (IN) and out of the other half (OUT)."""
        population = as_samples(population, "population")
        if not isinstance(num_models, int) or num_models < 2 or num_models % 2:
            raise ModelsafeError(f"online reference models come in IN/OUT halves: num_models must be an even "
                                 f"integer >= 2, got {num_models!r}")
        gen = make_generator(derive_seed(seed, "online-in-masks"))
        masks = torch.rand(num_models, len(population), generator=gen).argsort(dim=0) < num_models // 2
        subsets = [m.nonzero().squeeze(1) for m in masks]
        return cls._train_subsets(population, subsets, model_factory, trainer, seed, progress, store)

    @classmethod
    def _train_subsets(cls, population: TensorData, subsets: list[torch.Tensor], model_factory: ModelFactory,
                       trainer: Trainer | None, seed: int, progress: bool,
                       store: StoreSlot | None = None) -> ReferenceModels:
        """Model j built by ``model_factory(seed_j)`` and trained on ``population.subset(subsets[j])``, or loaded
        from ``store`` when it finished there before.

        Under ``torchrun`` rank r trains the models ``j % world == r`` (each on its own, see
        :func:`modelsafe.distributed.alone`); with ``store`` each is written there as it finishes and, after a
        barrier, every rank loads the others' from it (a relaunch after a crash trains only the missing ones);
        without one, each model is broadcast from the rank that trained it. Only rank 0 writes the store's
        description."""
        trainer = trainer or FitTrainer()
        start = time.perf_counter()
        finished = _open_store(store, subsets)
        models = [model_factory(derive_seed(seed, "reference-init", j)) for j in range(len(subsets))]
        masks = torch.zeros(len(subsets), len(population), dtype=torch.bool)
        for j, subset in enumerate(subsets):
            masks[j, subset] = True
        world, me = distributed.world_size(), distributed.rank()
        mine = [j for j in range(len(subsets)) if j % world == me and j not in finished]
        bar = tqdm(mine, desc="reference models", unit="model", disable=not (progress and distributed.is_main()))
        bar.set_postfix_str(f"{len(finished)} reused")
        for j in bar:
            with distributed.alone():
                _train_one(trainer, models[j], population, subsets[j], derive_seed(seed, "reference-train", j))
            if store is not None:
                save_weights(store.model_path(j), models[j])
        distributed.barrier()
        for j, model in enumerate(models):
            if store is not None and (j in finished or j % world != me):
                load_weights(store.model_path(j), model)
            elif store is None:
                distributed.broadcast_module(model, src=j % world)
        seconds = distributed.broadcast_object(time.perf_counter() - start)
        return cls([m.eval() for m in models], population, masks, seconds if len(finished) < len(subsets) else None)

    def first(self, k: int) -> ReferenceModels:
        """The first ``k`` models. :meth:`train` draws each model's subset and seed in turn, so the first ``k`` of
        a set equal the ``k`` models the same call with ``num_models=k`` trains (not true of
        :meth:`train_balanced`, whose in-masks are balanced over all models)."""
        if not isinstance(k, int) or not 1 <= k <= len(self):
            raise ModelsafeError(f"first(k) needs 1 <= k <= {len(self)} models, got {k!r}")
        return ReferenceModels(self.models[:k], self.population, self.in_masks[:k], self.train_seconds)

    def columns(self, data: TensorData, what: str) -> torch.Tensor:
        """(N,) the position in :attr:`population` of each sample of ``data`` (same input and label); a sample
        the population lacks is an error naming ``what``."""
        where = {d: i for i, d in enumerate(sample_digests(self.population))}
        cols = [where.get(d, -1) for d in sample_digests(data)]
        missing = sum(c < 0 for c in cols)
        if missing:
            raise ModelsafeError(f"{what}: {missing} of {len(cols)} samples are not in the reference models' "
                                 "population, so no model has them IN or OUT (online attacks need reference "
                                 "models trained on halves of a population that holds every scored sample)")
        return torch.tensor(cols, dtype=torch.long)

    def logits(self, data: TensorData, what: str, batch_size: int = 512,
               device: torch.device | None = None) -> torch.Tensor:
        """(k, N, C) logits of every reference model on ``data``."""
        return torch.stack([target_logits(m, data, f"{what} (reference model {j})", batch_size=batch_size,
                                          device=device) for j, m in enumerate(self.models)])


def _open_store(store: StoreSlot | None, subsets: list[torch.Tensor]) -> set[int]:
    """The models already finished in ``store`` (none without one): rank 0 opens it (and may rewrite its
    description), then every rank gets rank 0's answer."""
    finished = store.open(subsets) if store is not None and distributed.is_main() else set()
    return distributed.broadcast_object(finished)


def _train_one(trainer: Trainer, model: nn.Module, population: TensorData, indices: torch.Tensor,
               seed: int) -> None:
    if isinstance(trainer, SubsetTrainer):
        trainer.train_subset(model, population, indices, seed)
    else:
        trainer(model, population.subset(indices), seed)


def trainer_fingerprint(trainer: Trainer) -> dict:
    """A JSON-able description of a :class:`FitTrainer` or of a trainer with a ``fingerprint()`` method (other
    trainers: their repr)."""
    if isinstance(trainer, FitTrainer):
        return {"fit": asdict(trainer.config)}
    own = getattr(trainer, "fingerprint", None)
    return own() if callable(own) else {"trainer": repr(trainer)}


class UsesReferenceModels:
    """Options shared by the attacks built on reference models: either ready ``references``, or what is needed
    to train them at fit time (``population``, ``model_factory``, optional ``trainer``, ``num_models``,
    ``train_size``)."""

    unsent_attributes: ClassVar[tuple[str, ...]] = ("references", "population", "model_factory", "trainer")

    def _init_references(self, references: ReferenceModels | None, population: Samples | None,
                         model_factory: ModelFactory | None, trainer: Trainer | None, num_models: int,
                         train_size: int | None) -> None:
        self.references = references
        self.population = population
        self.model_factory = model_factory
        self.trainer = trainer
        self.num_models = check_positive_int("num_models", num_models)
        self.train_size = train_size

    def reference_details(self) -> dict:
        refs = self.references
        return {"num_models": len(refs) if refs is not None else self.num_models,
                "reference_seconds": refs.train_seconds if refs is not None else None}

    def reference_models(self) -> ReferenceModels:
        """The reference models, trained now (once) if they were not given."""
        if self.references is None:
            if self.population is None or self.model_factory is None:
                raise ModelsafeError(f"attack {self.name!r} needs reference models: pass references=, or "
                                     "population= and model_factory= to train them")
            self.references = ReferenceModels.train(self.population, self.model_factory, self.trainer,
                                                    num_models=self.num_models, train_size=self.train_size,
                                                    seed=derive_seed(self.seed, self.name, "references"),
                                                    progress=self.progress)
        return self.references

    def target_and_reference_logits(self, target: nn.Module, data, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the target (N, C) and of each reference model (k, N, C) on ``data``."""
        dev = target_device(target, self.device)
        logits = target_logits(target, data, what, batch_size=self.inference_batch_size, device=dev)
        self._check_classes(logits.shape[1])
        self.num_classes_ = logits.shape[1]
        refs = self.reference_models().logits(data, what, self.inference_batch_size, dev)
        if refs.shape[2] != logits.shape[1]:
            raise ModelsafeError(f"reference models output {refs.shape[2]} classes, the target {logits.shape[1]}")
        return logits, refs


@dataclass(frozen=True)
class StoreSlot:
    """One set of reference models on disk: ``folder`` holds ``references.json`` (the ``fingerprint`` of what
    made them, the number of models and each one's training indices) and ``ref-<j>.safetensors``, written as
    each model finishes, so an interrupted training resumes with the models it had finished."""

    folder: Path
    fingerprint: dict

    def model_path(self, j: int) -> Path:
        return self.folder / f"ref-{j}.safetensors"

    def open(self, subsets: list[torch.Tensor]) -> set[int]:
        """The models already finished for exactly these settings and subsets; anything else there is stale and
        is removed, and the description is (re)written."""
        meta = json.loads(json.dumps({"fingerprint": self.fingerprint, "num_models": len(subsets),
                                      "in_indices": [s.tolist() for s in subsets]}))
        path = self.folder / "references.json"
        same = path.is_file() and json.loads(path.read_text()) == meta
        if not same:
            for old in self.folder.glob("ref-*.safetensors"):
                old.unlink()
            write_json(path, meta)
        return {j for j in range(len(subsets)) if self.model_path(j).is_file()}


def store_slot(root: str | os.PathLike, fingerprint: dict) -> StoreSlot:
    """The slot of ``fingerprint`` (recipe, samples, seed, design) under the store folder ``root``: one folder
    per key, so one store serves any number of targets and recipes."""
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return StoreSlot(Path(root) / key, json.loads(json.dumps(fingerprint, default=str)))


def architecture_fingerprint(model_factory: ModelFactory) -> str:
    """A digest of the parameter names and shapes of ``model_factory(0)``: reference models of another
    architecture never match."""
    shapes = [(name, tuple(t.shape)) for name, t in model_factory(0).state_dict().items()]
    return hashlib.sha256(repr(shapes).encode()).hexdigest()[:16]
