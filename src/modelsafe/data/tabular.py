"""Purchase-100 and Texas-100, the tabular membership-inference benchmarks of Shokri et al. (S&P 2017) in the files
they distributed (``dataset_purchase.tgz``, ``dataset_texas.tgz``), as used by ML-Doctor and SafeCompress.

- ``purchase100``: the text file ``dataset_purchase``, one record per line: ``label,f1,...,f600`` with binary
  features and labels 1..100 (197,324 records).
- ``texas100``: ``texas/100/feats`` (6,169 comma-separated binary features per line) and ``texas/100/labels``
  (one label 1..100 per line) (67,330 records).

Labels are shifted to 0..99. The files have no official train/test split: a seeded one
(:func:`modelsafe.data.holdout.holdout_split`, 20% test by default) is made and recorded in
``Dataset.extras["split"]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modelsafe.data.archives import Layout, locate
from modelsafe.data.holdout import holdout_split
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError

NUM_CLASSES = 100
_SOURCE = "https://github.com/privacytrustlab/datasets"


@dataclass(frozen=True)
class TabularSpec:
    layout: Layout
    num_features: int
    archive_note: str


SPECS = {
    "purchase100": TabularSpec(Layout(("dataset_purchase",), archives=("dataset_purchase.tgz",)), 600,
                               "dataset_purchase.tgz (it holds the text file dataset_purchase)"),
    "texas100": TabularSpec(Layout(("texas/100/feats", "texas/100/labels"), archives=("dataset_texas.tgz",)), 6169,
                            "dataset_texas.tgz (it holds texas/100/feats and texas/100/labels)"),
}


def _read_binary_rows(path: Path) -> np.ndarray | None:
    """Fast path for a file of equal-length lines of single-digit fields (``0,1,1,...``), as Texas-100's
    ``feats``: parsed by reshaping the bytes (a second instead of minutes for the real file). None when the
    file has any other shape, so the general parser handles it (and reports problems)."""
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    data = np.frombuffer(raw, dtype=np.uint8)
    width = raw.find(b"\n") + 1
    if width < 2 or width % 2 or len(raw) % width:
        return None
    rows = data.reshape(-1, width)
    digits, separators = rows[:, 0:width - 1:2], rows[:, 1:width - 1:2]
    if (separators != ord(",")).any() or (rows[:, -1] != ord("\n")).any():
        return None
    if ((digits < ord("0")) | (digits > ord("9"))).any():
        return None
    return (digits - ord("0")).astype(np.float32)


def _read_table(path: Path, ndmin: int) -> np.ndarray:
    if ndmin == 2:
        fast = _read_binary_rows(path)
        if fast is not None:
            return fast
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=ndmin)
    except ValueError as exc:
        raise ModelsafeError(f"{path} is not a comma-separated table of numbers: {exc}") from None
    if table.size == 0:
        raise ModelsafeError(f"{path} holds no records")
    if not np.isfinite(table).all():
        raise ModelsafeError(f"{path} holds non-finite values")
    return table


def _labels(values: np.ndarray, path: Path) -> torch.Tensor:
    if not np.array_equal(values, np.round(values)) or values.min() < 1 or values.max() > NUM_CLASSES:
        raise ModelsafeError(f"{path}: labels must be integers 1..{NUM_CLASSES} (the original 1-based labels), "
                             f"got values in [{values.min():g}, {values.max():g}]")
    return torch.from_numpy(values.astype(np.int64) - 1)


def _read(name: str, folder: Path) -> tuple[np.ndarray, torch.Tensor]:
    spec = SPECS[name]
    if name == "purchase100":
        path = folder / "dataset_purchase"
        table = _read_table(path, 2)
        features, labels = table[:, 1:], _labels(table[:, 0], path)
    else:
        features = _read_table(folder / "texas/100/feats", 2)
        path = folder / "texas/100/labels"
        labels = _labels(_read_table(path, 1).reshape(-1), path)
        if labels.shape[0] != features.shape[0]:
            raise ModelsafeError(f"{folder}/texas/100: {features.shape[0]} feature rows but {labels.shape[0]} labels")
    if features.shape[1] != spec.num_features:
        raise ModelsafeError(f"dataset {name!r} in {folder}: expected {spec.num_features} features per record, "
                             f"got {features.shape[1]}")
    return np.ascontiguousarray(features), labels


def load_tabular(name: str, root: str | os.PathLike | None = None, seed: int = 0,
                 test_fraction: float = 0.2) -> Dataset:
    """``purchase100`` or ``texas100``: float32 (N, F) binary features, int64 labels 0..99, and a seeded
    train/test split of the records (``test_fraction`` of them in test)."""
    spec = SPECS[name]
    folder = locate(name, spec.layout, root,
                    f"Get {spec.archive_note} from {_SOURCE} (the files Shokri et al. distributed) and put it, or "
                    "what it extracts to, in one of those folders. There is no checksummed official source, so "
                    "modelsafe does not download it.")
    features, labels = _read(name, folder)
    train_idx, test_idx, record = holdout_split(labels.shape[0], test_fraction, seed, name)
    x = torch.from_numpy(features)
    info = DatasetInfo(name, "tabular", NUM_CLASSES, (spec.num_features,))
    return Dataset(info, TensorData(x[train_idx], labels[train_idx]), TensorData(x[test_idx], labels[test_idx]),
                   extras={"split": record})
