"""Datasets by name: ``load_dataset(name, root=None, download=False)``.

The built-in datasets are rows of :data:`_ROWS` (name, description, loader and the arguments it is called
with) in :data:`DATASETS`; :func:`register_dataset` adds a loader of your own."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from modelsafe.data.info import Dataset
from modelsafe.errors import ModelsafeError
from modelsafe.registry import Registry


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset. ``loader``: the function, or its import path ``"module:function"`` (imported on first
    use, so optional dependencies stay unloaded). It is called as ``loader(*args, <takes>, **options)``:
    ``args`` fixed by the row (e.g. the dataset's name for a loader shared by several datasets), then those of
    ``load_dataset``'s ``root`` and ``download`` that ``takes`` names, in that order, then the caller's
    options. ``shows_progress``: the loader also takes ``progress=bool`` (a bar while it decodes files)."""

    name: str
    description: str
    loader: str | Callable[..., Dataset]
    args: tuple[Any, ...] = ()
    takes: tuple[str, ...] = ("root", "download")
    shows_progress: bool = False

    def load(self, root: str | os.PathLike | None, download: bool, **options) -> Dataset:
        """Call the loader with the row's arguments and ``options``."""
        loader = self.loader
        if isinstance(loader, str):
            module, function = loader.split(":")
            loader = getattr(import_module(module), function)
        given = {"root": root, "download": download}
        return loader(*self.args, *(given[key] for key in self.takes), **options)


DATASETS: Registry[DatasetEntry] = Registry("dataset")

_IDX = "modelsafe.data.idx:load_idx_dataset"
_CIFAR = "modelsafe.data.cifar:load_cifar"
_TABULAR = "modelsafe.data.tabular:load_tabular"
_ROWS = (
    DatasetEntry("fashion-mnist", "Zalando Fashion-MNIST, 28x28 grey, 10 classes (IDX files)", _IDX,
                 ("fashion-mnist",)),
    DatasetEntry("mnist", "MNIST handwritten digits, 28x28 grey, 10 classes (IDX files)", _IDX, ("mnist",)),
    DatasetEntry("digits", "scikit-learn digits, 8x8 grey, 10 classes (bundled, always offline)",
                 "modelsafe.data.digits:load_digits_dataset", takes=()),
    DatasetEntry("cifar10", "CIFAR-10, 32x32 RGB, 10 classes (python pickle batches or cifar-10-python.tar.gz)",
                 _CIFAR, ("cifar10",)),
    DatasetEntry("cifar100", "CIFAR-100, 32x32 RGB, 100 fine classes (python pickles or cifar-100-python.tar.gz)",
                 _CIFAR, ("cifar100",)),
    # the tabular benchmarks have no checksummed official source: no download
    DatasetEntry("purchase100", "Purchase-100 MIA benchmark, 600 binary features, 100 classes (seeded 80/20 split)",
                 _TABULAR, ("purchase100",), takes=("root",)),
    DatasetEntry("texas100", "Texas-100 MIA benchmark, 6169 binary features, 100 classes (seeded 80/20 split)",
                 _TABULAR, ("texas100",), takes=("root",)),
    DatasetEntry("tiny-imagenet", "Tiny-ImageNet, 64x64 RGB, 200 classes (train / official val as test)",
                 "modelsafe.data.tiny_imagenet:load_tiny_imagenet"),
    # local folders / files by nature: no download
    DatasetEntry("imagenet-compatible", "ImageNet-class images + labels CSV (NIPS-2017 dev-set layout), test split "
                 "only", "modelsafe.data.imagefolder:load_imagenet_compatible", takes=("root",), shows_progress=True),
    DatasetEntry("text", "text classification from CSV/JSONL (text, label columns), token ids, train-only vocab",
                 "modelsafe.data.text:load_text", takes=("root",)),
)
for _row in _ROWS:
    DATASETS.register(_row.name, _row)


def register_dataset(name: str, description: str, *, shows_progress: bool = False
                     ) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator adding ``loader(root, download, **options)`` to :data:`DATASETS` under ``name``;
    ``shows_progress``: the loader also takes ``progress=bool``. A name already registered is refused."""
    return DATASETS.register(name, wrap=lambda fn: DatasetEntry(name, description, fn,
                                                                shows_progress=shows_progress))


def list_datasets(pattern: str | None = None) -> list[str]:
    """Dataset names, sorted; those matching the shell-style ``pattern`` when given."""
    return DATASETS.names(pattern)


def dataset_entry(name: str) -> DatasetEntry:
    """The row of dataset ``name`` (description, loader); :class:`UnknownNameError` for unknown names."""
    return DATASETS.get(name)


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False, *,
                 progress: bool = True, **options) -> Dataset:
    """Load a dataset by name. ``root`` is searched first; ``download=True`` fetches missing files (with
    checksum verification) where the dataset has an official source. ``progress=False`` silences the bar of
    loaders that decode many files. Unknown names raise :class:`UnknownNameError` listing the valid ones;
    missing files raise :class:`DataNotFoundError` listing where modelsafe looked."""
    entry = DATASETS.get(name)
    if entry.shows_progress:
        options = {"progress": progress, **options}
    try:
        return entry.load(root, download, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ModelsafeError(f"dataset {name!r} does not take that option: {exc}") from None
