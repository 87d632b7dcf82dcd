"""A seeded train/test split for datasets that ship without an official one (Purchase-100, Texas-100, text)."""

from __future__ import annotations

import hashlib

import torch

from modelsafe._checks import check_fraction, check_non_negative_int
from modelsafe.utils import derive_seed, make_generator


def holdout_split(n: int, test_fraction: float, seed: int, tag: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Split ``range(n)`` into sorted int64 (train, test) row indices with ``round(test_fraction * n)`` test rows,
    drawn by ``torch.randperm`` from a generator seeded with ``derive_seed(seed, tag, "holdout")``.

    Also returns a JSON-ready record of how the split was made (kept in ``Dataset.extras["split"]``), with a
    SHA-256 fingerprint of the test rows so that two runs can confirm they used the same split."""
    check_fraction("test_fraction", test_fraction, closed_low=False, closed_high=False)
    check_non_negative_int("seed", seed)
    n_test = round(test_fraction * n)
    perm = torch.randperm(n, generator=make_generator(derive_seed(seed, tag, "holdout")))
    test = perm[:n_test].sort().values
    train = perm[n_test:].sort().values
    record = {
        "method": "seeded random permutation of the source rows (modelsafe.data.holdout)",
        "seed": seed,
        "test_fraction": test_fraction,
        "train_size": int(train.numel()),
        "test_size": int(test.numel()),
        "test_rows_sha256": hashlib.sha256(test.numpy().astype("<i8").tobytes()).hexdigest(),
    }
    return train, test, record
