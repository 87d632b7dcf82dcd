"""Datasets by name: ``load_dataset(name, root=None, download=False)``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from modelsafe.data.info import Dataset
from modelsafe.errors import ModelsafeError, UnknownNameError


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    description: str
    loader: Callable[..., Dataset]  # loader(root, download, **options) -> Dataset
    shows_progress: bool = False  # the loader takes progress=bool (a bar while it decodes files)


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, description: str, *, shows_progress: bool = False
                     ) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator adding ``loader(root, download, **options)`` to the registry under ``name``;
    ``shows_progress``: the loader also takes ``progress=bool``."""

    def wrap(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY[name] = DatasetEntry(name, description, fn, shows_progress)
        return fn

    return wrap


def list_datasets() -> list[DatasetEntry]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def load_dataset(name: str, root: str | os.PathLike | None = None, download: bool = False, *,
                 progress: bool = True, **options) -> Dataset:
    """Load a dataset by name. ``root`` is searched first; ``download=True`` fetches missing files (with
    checksum verification) where the dataset has an official source. ``progress=False`` silences the bar of
    loaders that decode many files. Unknown names raise :class:`UnknownNameError` listing the valid ones;
    missing files raise :class:`DataNotFoundError` listing where modelsafe looked."""
    if name not in _REGISTRY:
        raise UnknownNameError("dataset", name, list(_REGISTRY))
    if _REGISTRY[name].shows_progress:
        options = {"progress": progress, **options}
    try:
        return _REGISTRY[name].loader(root, download, **options)
    except TypeError as exc:
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ModelsafeError(f"dataset {name!r} does not take that option: {exc}") from None


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


@register_dataset("cifar10", "CIFAR-10, 32x32 RGB, 10 classes (python pickle batches or cifar-10-python.tar.gz)")
def _cifar10(root, download, **options) -> Dataset:
    from modelsafe.data.cifar import load_cifar

    return load_cifar("cifar10", root, download, **options)


@register_dataset("cifar100", "CIFAR-100, 32x32 RGB, 100 fine classes (python pickles or cifar-100-python.tar.gz)")
def _cifar100(root, download, **options) -> Dataset:
    from modelsafe.data.cifar import load_cifar

    return load_cifar("cifar100", root, download, **options)


@register_dataset("purchase100", "Purchase-100 MIA benchmark, 600 binary features, 100 classes (seeded 80/20 split)")
def _purchase100(root, download, **options) -> Dataset:
    del download  # no checksummed official source
    from modelsafe.data.tabular import load_tabular

    return load_tabular("purchase100", root, **options)


@register_dataset("texas100", "Texas-100 MIA benchmark, 6169 binary features, 100 classes (seeded 80/20 split)")
def _texas100(root, download, **options) -> Dataset:
    del download  # no checksummed official source
    from modelsafe.data.tabular import load_tabular

    return load_tabular("texas100", root, **options)


@register_dataset("tiny-imagenet", "Tiny-ImageNet, 64x64 RGB, 200 classes (train / official val as test)")
def _tiny_imagenet(root, download, **options) -> Dataset:
    from modelsafe.data.tiny_imagenet import load_tiny_imagenet

    return load_tiny_imagenet(root, download, **options)


@register_dataset("imagenet-compatible",
                  "ImageNet-class images + labels CSV (NIPS-2017 dev-set layout), test split only",
                  shows_progress=True)
def _imagenet_compatible(root, download, **options) -> Dataset:
    del download  # a local folder by nature
    from modelsafe.data.imagefolder import load_imagenet_compatible

    return load_imagenet_compatible(root, **options)


@register_dataset("text", "text classification from CSV/JSONL (text, label columns), token ids, train-only vocab")
def _text(root, download, **options) -> Dataset:
    del download  # a local file by nature
    from modelsafe.data.text import load_text

    return load_text(root, **options)
