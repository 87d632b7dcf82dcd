"""Datasets by name: ``load_dataset(name, root=None, download=False)``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from modelsafe.data.info import Dataset
from modelsafe.errors import UnknownNameError


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    loader: Callable[..., Dataset]  # loader(root, download, **options) -> Dataset


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator adding ``loader(root, download, **options)`` to the registry under ``name``."""

    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY[name] = DatasetEntry(name, description, fn)
        return fn

    return wrap


def list_datasets() -> list[DatasetEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False, **options) -> Dataset:
    """Load a dataset by name. ``root`` is searched first; ``download=True`` fetches missing files (with
    checksum verification) where the dataset has an official source. Unknown names raise
    :class:`UnknownNameError` listing the valid ones; missing files raise :class:`DataNotFoundError` listing
    where modelsafe looked."""
    if name not in _REGISTRY:
        raise UnknownNameError("dataset", name, list(_REGISTRY))
    return _REGISTRY[name].loader(root, download, **options)


@register_dataset("fashion-mnist", "Zalando Fashion-MNIST, 28x28 grey, 10 classes (IDX files)")
def _fashion(root, download, **options) -> Dataset:
    from modelsafe.data.idx import load_idx_dataset

    return load_idx_dataset("fashion-mnist", root, download, **options)


@register_dataset("mnist", "MNIST handwritten digits, 28x28 grey, 10 classes (IDX files)")
def _mnist(root, download, **options) -> Dataset:
    from modelsafe.data.idx import load_idx_dataset

    return load_idx_dataset("mnist", root, download, **options)


@register_dataset("digits", "scikit-learn digits, 8x8 grey, 10 classes (bundled, always offline)")
def _digits(root, download, **options) -> Dataset:
    del root, download
    from modelsafe.data.digits import load_digits_dataset

    return load_digits_dataset(**options)
