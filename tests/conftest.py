"""Shared fixtures: small generated datasets in the real file formats, so no test needs the network."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from modelsafe.data.info import Dataset, DatasetInfo, TensorData


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.fixture
def idx_dir(tmp_path: Path) -> Path:
    """A fashion-mnist-shaped folder of IDX files: 60 train and 20 test 28x28 images."""
    rng = np.random.default_rng(0)
    d = tmp_path / "fashion-mnist"
    d.mkdir()
    for prefix, n in (("train", 60), ("t10k", 20)):
        write_idx(d / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))
    return d


def make_blobs(n_train: int = 400, n_test: int = 200, num_classes: int = 4, size: int = 8, seed: int = 0,
               name: str = "blobs") -> Dataset:
    """A learnable image dataset: each class is a noisy copy of its own random template, values in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.rand(num_classes, 1, size, size, generator=gen)

    def draw(n: int) -> TensorData:
        y = torch.arange(n) % num_classes
        x = (templates[y] + 0.25 * torch.randn(n, 1, size, size, generator=gen)).clamp(0, 1)
        return TensorData(x, y)

    info = DatasetInfo(name, "image", num_classes, (1, size, size), (0.5,), (0.3,))
    return Dataset(info, draw(n_train), draw(n_test))


@pytest.fixture
def blobs() -> Dataset:
    return make_blobs()
