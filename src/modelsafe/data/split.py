"""Membership splits: seeded, disjoint index sets into ``dataset.pool()`` (train samples first, then test).

Sets (membership label 1 = member, 0 = non-member):

============================  ========================================================================
``members``                   the target model's training set
``validation``                held-out training-distribution samples for model selection (never trained on)
``test``                      samples for task accuracy (the official test split; never trained on)
``attack_known_members``      members the attacker knows (subset of ``members``)
``attack_reference``          non-members the attacker knows
``eval_members``              members used only to evaluate attacks (``members`` minus the known ones)
``eval_nonmembers``           non-members used only to evaluate attacks
``population``                extra non-member data for shadow / reference models
============================  ========================================================================

``members``, ``validation``, ``attack_reference``, ``eval_nonmembers`` and ``population`` are pairwise
disjoint; ``test`` is disjoint from ``members`` and ``validation`` (it may coincide with non-member sets when
those are drawn from the test split, as in the SafeCompress recipe).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from modelsafe._checks import check_choice, check_fraction, check_non_negative_int, check_seed
from modelsafe.data.info import Dataset, TensorData
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.utils import derive_seed, make_generator

SET_NAMES = ("members", "validation", "test", "attack_known_members", "attack_reference", "eval_members",
             "eval_nonmembers", "population")
_DISJOINT = ("members", "validation", "attack_reference", "eval_nonmembers", "population")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SplitSpec:
    """Sizes of a membership split. A float in (0, 1) is a fraction of the split the set is drawn from (the
    train split, or the test split for non-members with ``nonmember_source="test"``); ``None`` means "all that
    is left" (see each field).

    - ``members``: target training set size (None: every train sample left after validation/population).
    - ``validation``: size of the validation set, drawn from the train split.
    - ``known_fraction``: fraction of members the attacker knows; the rest are evaluation members.
    - ``nonmember_source``: ``"train"`` (unused train samples, same distribution) or ``"test"`` (the test
      split, as the SafeCompress code does).
    - ``reference`` / ``eval_nonmembers``: attacker-known and evaluation non-members (None: as many as the
      known / evaluation members, capped by what the source has left; with source ``"test"``, None splits the
      test split in halves).
    - ``population``: shadow/reference pool drawn from the train split (0: none; None: every train sample
      no other set uses, which needs a fixed ``members`` count)."""

    members: int | float | None = None
    validation: int | float = 1000
    known_fraction: float = 0.5
    nonmember_source: str = "train"
    reference: int | float | None = None
    eval_nonmembers: int | float | None = None
    population: int | float | None = 0


RECIPES: dict[str, SplitSpec] = {
    # SafeCompress (Zhu et al., ASE 2022): all train samples are members, the attacker knows half of them; the test split
    # is halved into attacker-reference and evaluation non-members. Departure: the official code selects models
    # on the test set; here 10% of the train split is held out as a validation set instead.
    "safecompress": SplitSpec(members=None, validation=0.1, known_fraction=0.5, nonmember_source="test"),
    # A small member set so that the target overfits and leaks (benchmarks, demos); non-members from train.
    "small": SplitSpec(members=2500, validation=1000, known_fraction=0.5, nonmember_source="train",
                       population=None),
}


def get_recipe(name: str, **overrides) -> SplitSpec:
    """A named recipe with some sizes overridden (``None`` overrides are ignored)."""
    if name not in RECIPES:
        raise UnknownNameError("split recipe", name, list(RECIPES))
    return replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class MembershipSplit:
    """Index sets into ``dataset.pool()``. Build with :meth:`create`, save with :meth:`save` (``split.json``)."""

    dataset: str
    num_train: int
    num_test: int
    seed: int
    spec: SplitSpec
    sets: dict[str, torch.Tensor] = field(repr=False)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, dataset: Dataset, spec: SplitSpec | str = "small", seed: int = 0) -> MembershipSplit:
        """Draw a split of ``dataset`` from ``spec`` (a :class:`SplitSpec` or a recipe name) with ``seed``."""
        if isinstance(spec, str):
            spec = get_recipe(spec)
        return cls.from_sizes(dataset.info.name, len(dataset.train), len(dataset.test), spec, seed)

    @classmethod
    def from_sizes(cls, dataset: str, num_train: int, num_test: int, spec: SplitSpec, seed: int = 0) -> MembershipSplit:
        _check_spec(spec)
        seed = check_seed("seed", seed)
        if num_train == 0:
            raise ModelsafeError(f"dataset {dataset!r} has no training samples, so it cannot be split into members "
                                 "and non-members (it is an evaluation-only set)")
        spec = _absolute(spec, num_train, num_test)
        if spec.validation == 0:  # only splits of models trained elsewhere go without one
            raise ModelsafeError("split set 'validation' is empty; raise the sizes in the split spec")
        gen = make_generator(derive_seed(seed, "membership-split"))
        train_order = torch.randperm(num_train, generator=gen)
        test_order = torch.randperm(num_test, generator=gen) + num_train
        taken = 0

        def take(pool: torch.Tensor, start: int, n: int, what: str) -> torch.Tensor:
            if start + n > pool.numel():
                raise ModelsafeError(
                    f"split of {dataset!r}: not enough samples for {what} ({n} requested, "
                    f"{pool.numel() - start} left of {pool.numel()}); lower the sizes in the split spec")
            return pool[start:start + n]

        validation = take(train_order, taken, spec.validation, "validation")
        taken += spec.validation
        if spec.population is not None:
            population = take(train_order, taken, spec.population, "population")
            taken += spec.population
        n_members = num_train - taken if spec.members is None else spec.members
        if spec.nonmember_source == "train" and spec.members is None:
            raise ModelsafeError("split: members=None (all of train) needs nonmember_source='test'")
        members = take(train_order, taken, n_members, "members")
        taken += n_members
        n_known = int(round(spec.known_fraction * n_members))
        known, eval_members = members[:n_known], members[n_known:]

        if spec.nonmember_source == "train":
            source, start = train_order, taken
        else:
            source, start = test_order, 0
        left = source.numel() - start
        if spec.nonmember_source == "test" and spec.reference is None and spec.eval_nonmembers is None:
            n_ref, n_eval = left // 2, left - left // 2
        else:
            n_ref = spec.reference if spec.reference is not None else min(n_known, left // 2)
            n_eval = spec.eval_nonmembers if spec.eval_nonmembers is not None else min(len(eval_members), left - n_ref)
        reference = take(source, start, n_ref, "attack_reference")
        eval_nonmembers = take(source, start + n_ref, n_eval, "eval_nonmembers")
        if spec.nonmember_source == "train":
            taken += n_ref + n_eval
        if spec.population is None:  # everything the train split has left
            population = train_order[taken:]

        sets = {
            "members": members, "validation": validation, "test": test_order.sort().values,
            "attack_known_members": known, "attack_reference": reference, "eval_members": eval_members,
            "eval_nonmembers": eval_nonmembers, "population": population,
        }
        split = cls(dataset, num_train, num_test, int(seed), spec, {k: v.clone() for k, v in sets.items()})
        split.validate()
        return split

    # ------------------------------------------------------------------ access
    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.sets:
            raise UnknownNameError("split set", name, list(self.sets))
        return self.sets[name]

    def sizes(self) -> dict[str, int]:
        return {k: int(v.numel()) for k, v in self.sets.items()}

    def data(self, dataset: Dataset, name: str) -> TensorData:
        """The samples of set ``name``, taken from ``dataset.pool()`` (built once per dataset)."""
        self.check_dataset(dataset)
        return dataset.pool().subset(self[name])

    def check_dataset(self, dataset: Dataset) -> None:
        if (dataset.info.name, len(dataset.train), len(dataset.test)) != (self.dataset, self.num_train, self.num_test):
            raise ModelsafeError(
                f"split was made for {self.dataset!r} ({self.num_train} train / {self.num_test} test), not for "
                f"{dataset.info.name!r} ({len(dataset.train)} / {len(dataset.test)})")

    # ------------------------------------------------------------------ invariants
    def validate(self) -> None:
        """Raise :class:`ModelsafeError` if any documented invariant is broken."""
        total = self.num_train + self.num_test
        for name in SET_NAMES:
            if name not in self.sets:
                raise ModelsafeError(f"split is missing the set {name!r}")
            idx = self.sets[name]
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= total):
                raise ModelsafeError(f"split set {name!r} has indices outside [0, {total})")
            if idx.unique().numel() != idx.numel():
                raise ModelsafeError(f"split set {name!r} has repeated indices")
        for name in ("members", "validation", "attack_known_members", "attack_reference", "eval_members",
                     "eval_nonmembers"):
            if name == "validation" and self.spec.validation == 0:  # a split of a model trained elsewhere
                continue
            if self.sets[name].numel() == 0:
                raise ModelsafeError(f"split set {name!r} is empty; raise the sizes in the split spec")
        for i, a in enumerate(_DISJOINT):
            for b in _DISJOINT[i + 1:]:
                if _overlap(self.sets[a], self.sets[b]):
                    raise ModelsafeError(f"split sets {a!r} and {b!r} overlap")
        for name in ("members", "validation"):
            if _overlap(self.sets["test"], self.sets[name]):
                raise ModelsafeError(f"split sets 'test' and {name!r} overlap")
        members = set(self.sets["members"].tolist())
        known, evals = self.sets["attack_known_members"], self.sets["eval_members"]
        if not set(known.tolist()) <= members or not set(evals.tolist()) <= members:
            raise ModelsafeError("attack_known_members and eval_members must be subsets of members")
        if _overlap(known, evals):
            raise ModelsafeError("split sets 'attack_known_members' and 'eval_members' overlap")
        if known.numel() + evals.numel() != len(members):
            raise ModelsafeError("attack_known_members and eval_members must together cover members")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "dataset": self.dataset, "num_train": self.num_train,
                "num_test": self.num_test, "seed": self.seed, "spec": asdict(self.spec),
                "sets": {k: v.tolist() for k, v in self.sets.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> MembershipSplit:
        if not isinstance(data, dict):
            raise ModelsafeError(f"malformed split: expected a JSON object, got {type(data).__name__}")
        try:
            if data["format_version"] != FORMAT_VERSION:
                raise ModelsafeError(f"split format version {data['format_version']} is not supported")
            if not isinstance(data["sets"], dict) or not isinstance(data["spec"], dict):
                raise TypeError("'sets' and 'spec' must be JSON objects")
            sets = {k: _indices(k, data["sets"][k]) for k in SET_NAMES}
            numbers = {k: _count(k, data[k]) for k in ("num_train", "num_test", "seed")}
            split = cls(_text("dataset", data["dataset"]), numbers["num_train"], numbers["num_test"], numbers["seed"],
                        SplitSpec(**data["spec"]), sets)
        except (KeyError, TypeError) as exc:
            raise ModelsafeError(f"malformed split: missing or invalid field {exc}") from None
        split.validate()
        return split

    def save(self, path: str | os.PathLike) -> Path:
        from modelsafe.storage.io import write_json

        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> MembershipSplit:
        from modelsafe.storage.readers import read_json_file

        path = Path(path)
        data = read_json_file(path, "split file")
        try:
            return cls.from_dict(data)
        except ModelsafeError as exc:
            raise ModelsafeError(f"split file {path}: {exc}") from None


def _indices(name: str, values) -> torch.Tensor:
    """A set's indices: a flat list of integers (no floats, which would be truncated, no nested lists)."""
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        bad = values if not isinstance(values, list) else next(v for v in values if type(v) is not int)
        raise ModelsafeError(f"malformed split: set {name!r} must be a flat list of integer indices, "
                             f"found {bad!r:.40}")
    return torch.tensor(values, dtype=torch.long)


def _count(name: str, value) -> int:
    if type(value) is not int or value < 0:
        raise ModelsafeError(f"malformed split: field {name!r} must be a non-negative integer, got {value!r:.40}")
    return value


def _text(name: str, value) -> str:
    if not isinstance(value, str):
        raise ModelsafeError(f"malformed split: field {name!r} must be a string, got {value!r:.40}")
    return value


def _overlap(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.isin(a, b).any()) if a.numel() and b.numel() else False


_SIZES = ("members", "validation", "reference", "eval_nonmembers", "population")


def _check_spec(spec: SplitSpec) -> None:
    for name in _SIZES:
        value = getattr(spec, name)
        if value is None and name == "validation":
            raise ModelsafeError("split: validation must be a size or a fraction, not None")
        if isinstance(value, float):
            check_fraction(name, value, closed_low=False, closed_high=False)
        elif value is not None:
            check_non_negative_int(name, value)
    if spec.population is None and spec.members is None:
        raise ModelsafeError("split: population=None (all that is left) needs a fixed members count")
    if isinstance(spec.members, int) and spec.members < 2:
        raise ModelsafeError(f"split: members must be >= 2 (or None for all), got {spec.members!r}")
    check_fraction("known_fraction", spec.known_fraction, closed_low=False, closed_high=False)
    check_choice("nonmember_source", spec.nonmember_source, ("train", "test"))


def _absolute(spec: SplitSpec, num_train: int, num_test: int) -> SplitSpec:
    """Turn fractional sizes into counts of the split each set is drawn from."""
    nonmember_total = num_test if spec.nonmember_source == "test" else num_train
    totals = {"members": num_train, "validation": num_train, "population": num_train,
              "reference": nonmember_total, "eval_nonmembers": nonmember_total}
    return replace(spec, **{k: int(round(getattr(spec, k) * totals[k])) for k in _SIZES
                            if isinstance(getattr(spec, k), float)})
