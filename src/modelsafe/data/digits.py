"""scikit-learn's bundled 8x8 ``digits``: the dataset that always works offline."""

from __future__ import annotations

import torch

from modelsafe.data.info import Dataset, DatasetInfo, TensorData, image_stats

TRAIN_FRACTION = 0.8


def load_digits_dataset() -> Dataset:
    """1,797 8x8 grey digits (values 0..16 scaled to [0, 1]); the first 80% is train, the rest test
    (scikit-learn ships no official split)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    n_train = int(round(TRAIN_FRACTION * len(y)))
    mean, std = image_stats(x[:n_train])
    info = DatasetInfo("digits", "image", 10, (1, 8, 8), mean, std, tuple(str(i) for i in range(10)))
    return Dataset(info, TensorData(x[:n_train], y[:n_train]), TensorData(x[n_train:], y[n_train:]))
