"""MNIST-family datasets stored as IDX files (optionally gzipped): ``mnist`` and ``fashion-mnist``."""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from modelsafe.data.files import cache_dir, download, find_files, missing, resolve
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError

IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

# Published checksums of the original distribution files (the sources publish MD5 only). Fashion-MNIST's
# documented address is the bucket's plain-http website endpoint; the same public objects are fetched over
# https from the bucket's REST endpoint, and the MD5 is checked either way.
_SOURCES = {
    "fashion-mnist": ("https://fashion-mnist.s3.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    }),
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }),
}

_CLASSES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist": tuple(str(i) for i in range(10)),
}
# Per-channel statistics of the official training images (computed by image_stats on the real files).
_STATS = {"fashion-mnist": ((0.286041,), (0.353024,)), "mnist": ((0.130660,), (0.308108,))}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into an array of its declared dtype and shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ModelsafeError(f"{path} cannot be read: it is damaged or truncated ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ModelsafeError(f"{path} is not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        raise ModelsafeError(f"{path}: unknown IDX element type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ModelsafeError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise ModelsafeError(f"{path}: IDX body has {len(data) - header} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def load_idx_dataset(name: str, root: str | os.PathLike | None = None, download_missing: bool = False) -> Dataset:
    """Load ``mnist`` or ``fashion-mnist`` from IDX files found by :func:`find_files`."""
    url, md5s = _SOURCES[name]
    directory = find_files(name, IDX_FILES, root)
    if directory is None and download_missing:
        directory = cache_dir(name)
        for fname in IDX_FILES:
            if resolve(directory, fname) is None:
                download(url + fname, directory / fname, md5=md5s[fname])
    if directory is None:
        hint = ("Get it with `apt-get install dataset-fashion-mnist` (Debian), " if name == "fashion-mnist" else "")
        raise missing(name, IDX_FILES, root,
                      f"{hint}pass download=True (CLI: --download) to fetch the official files, or put the four "
                      "IDX files in one of those folders.")
    arrays = [read_idx(resolve(directory, f)) for f in IDX_FILES]
    x_train, y_train, x_test, y_test = arrays
    for imgs, labels, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if imgs.ndim != 3 or labels.ndim != 1 or imgs.shape[0] != labels.shape[0]:
            raise ModelsafeError(f"{name} {split}: images {imgs.shape} and labels {labels.shape} do not match")
        if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(_CLASSES[name])):
            labels_file = resolve(directory, IDX_FILES[1 if split == "train" else 3])
            raise ModelsafeError(f"{labels_file}: labels must lie in [0, {len(_CLASSES[name])}), found "
                                 f"[{int(labels.min())}, {int(labels.max())}]; the file is damaged")
    h, w = x_train.shape[1:]
    mean, std = _STATS[name]
    info = DatasetInfo(name, "image", 10, (1, h, w), mean, std, _CLASSES[name])
    to_data = lambda x, y: TensorData(torch.from_numpy(x.copy()).unsqueeze(1),
                                      torch.from_numpy(y.astype(np.int64)))
    return Dataset(info, to_data(x_train, y_train), to_data(x_test, y_test))
