"""CIFAR-10 and CIFAR-100 from the official "python version" pickle batches.

The batches are pickled dicts (written by Python 2) holding ``data``: a uint8 (N, 3072) array (1024 red, then
1024 green, then 1024 blue values of a 32x32 image, row-major) and the labels (``labels`` for CIFAR-10,
``fine_labels`` for CIFAR-100). Pickles can run arbitrary code, so they are read with an unpickler that only
rebuilds plain containers and non-object numpy arrays, and the result is checked field by field.
"""

from __future__ import annotations

import codecs
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modelsafe.data.archives import Layout, locate
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError


@dataclass(frozen=True)
class CifarSpec:
    folder: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str
    num_classes: int
    archive: str
    md5: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


SPECS = {
    # Per-channel statistics of the 50,000 official training images (over all pixels).
    "cifar10": CifarSpec("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                         "batches.meta", "labels", "label_names", 10, "cifar-10-python.tar.gz",
                         "c58f30108f718f92721af3b95e74349a", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": CifarSpec("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", "fine_label_names", 100,
                          "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
                          (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_URL = "https://www.cs.toronto.edu/~kriz/"


def _reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"refusing to rebuild an array of type {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _dtype(spec, align=False, copy=False):
    dt = np.dtype(spec, align=bool(align), copy=bool(copy))
    if dt.hasobject:
        raise pickle.UnpicklingError("refusing to rebuild an object array")
    return dt


def _frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, _dtype(dtype)).reshape(shape, order=order)


def _encode(text, encoding="latin1"):
    # Python 3 writes bytes as _codecs.encode(str, "latin1") under pickle protocols 0-2.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
    return codecs.encode(text, "latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds dicts, lists, tuples, strings, numbers and non-object numpy arrays; any other global is refused."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def read_batch(path: str | os.PathLike) -> dict[str, object]:
    """Read one CIFAR pickle safely; keys and byte strings come back as ``str``."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            MemoryError) as exc:
        raise ModelsafeError(f"{path} is not a readable CIFAR pickle: {exc}") from None
    if not isinstance(obj, dict):
        raise ModelsafeError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return {_text(k): v for k, v in obj.items()}


def _text(v: object) -> object:
    return v.decode("latin1") if isinstance(v, bytes) else v


def _images_and_labels(path: Path, spec: CifarSpec) -> tuple[np.ndarray, np.ndarray]:
    batch = read_batch(path)
    for key in ("data", spec.label_key):
        if key not in batch:
            raise ModelsafeError(f"{path}: missing key {key!r} (has {sorted(map(str, batch))})")
    data, labels = batch["data"], np.asarray(batch[spec.label_key])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ModelsafeError(f"{path}: 'data' must be a uint8 (N, 3072) array, got {got}")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise ModelsafeError(f"{path}: {spec.label_key!r} must hold {data.shape[0]} integer labels")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ModelsafeError(f"{path}: labels must lie in [0, {spec.num_classes}), "
                             f"got [{labels.min()}, {labels.max()}]")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _split(folder: Path, files: tuple[str, ...], spec: CifarSpec) -> TensorData:
    parts = [_images_and_labels(folder / f, spec) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return TensorData(torch.from_numpy(x), torch.from_numpy(y))


def _class_names(folder: Path, spec: CifarSpec) -> tuple[str, ...]:
    meta = read_batch(folder / spec.meta)
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or len(names) != spec.num_classes:
        raise ModelsafeError(f"{folder / spec.meta}: {spec.names_key!r} must list {spec.num_classes} class names")
    return tuple(str(_text(n)) for n in names)


def layout(name: str) -> Layout:
    spec = SPECS[name]
    return Layout(required=(*spec.train, *spec.test, spec.meta), subdirs=(spec.folder,), archives=(spec.archive,),
                  url=_URL + spec.archive, md5=spec.md5)


def load_cifar(name: str, root: str | os.PathLike | None = None, download_missing: bool = False) -> Dataset:
    """``cifar10`` or ``cifar100``: 32x32x3 uint8 images, the official 50,000/10,000 train/test split.
    CIFAR-100 uses the 100 fine labels."""
    spec = SPECS[name]
    folder = locate(name, layout(name), root,
                    f"Get {spec.archive} from {_URL}cifar.html and put it (or its extracted {spec.folder}/ "
                    "folder) in one of those folders.", download_missing)
    train, test = _split(folder, spec.train, spec), _split(folder, spec.test, spec)
    info = DatasetInfo(name, "image", spec.num_classes, (3, 32, 32), spec.mean, spec.std, _class_names(folder, spec))
    return Dataset(info, train, test)
