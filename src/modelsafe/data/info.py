"""What a loaded dataset holds: its description (:class:`DatasetInfo`) and its samples (:class:`TensorData`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from modelsafe.errors import ModelsafeError

Kind = Literal["image", "tabular", "text"]


@dataclass(frozen=True)
class DatasetInfo:
    """``input_shape`` is (C, H, W) for images, (F,) for tabular data and (L,) for text token ids.
    ``mean``/``std`` are per-channel statistics of the [0, 1] training images (None for other kinds)."""

    name: str
    kind: Kind
    num_classes: int
    input_shape: tuple[int, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    classes: tuple[str, ...] | None = None
    vocab_size: int | None = None


@dataclass
class TensorData:
    """Samples held in memory.

    ``x``: uint8 (N, C, H, W) images (scaled to [0, 1] on the way out), float images in [0, 1],
    float (N, F) features, or int64 (N, L) token ids. ``y``: int64 (N,) class indices."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ModelsafeError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        self.y = self.y.long()

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, indices: Sequence[int] | torch.Tensor) -> TensorData:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorData(self.x[idx], self.y[idx])

    def features(self, indices: torch.Tensor | slice | None = None) -> torch.Tensor:
        """Model-ready inputs: uint8 images become float32 in [0, 1]; other dtypes pass through."""
        x = self.x if indices is None else self.x[indices]
        return x.float().div_(255.0) if x.dtype == torch.uint8 else x

    def batches(self, batch_size: int, *, shuffle: bool = False, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, labels) batches on ``device`` (copied asynchronously to a GPU, see
        :func:`modelsafe.utils.host_to_device`). Shuffling draws from ``generator``."""
        from modelsafe.utils import host_to_device

        device, n = torch.device(device), len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield host_to_device(self.features(idx), device), host_to_device(self.y[idx], device)


@dataclass
class Dataset:
    """A dataset's official train and test splits. Membership splits index :meth:`pool`: train samples come
    first (indices ``0 .. len(train)-1``), then test samples."""

    info: DatasetInfo
    train: TensorData
    test: TensorData
    extras: dict = field(default_factory=dict)

    def pool(self) -> TensorData:
        """Train then test samples as one :class:`TensorData`, built on first use and kept (rebuilt when
        ``train`` or ``test`` is replaced), so taking many sets of a split costs one concatenation."""
        key = (id(self.train), id(self.test))
        cached = self.__dict__.get("_pool")
        if cached is None or cached[0] != key:
            cached = (key, TensorData(torch.cat([self.train.x, self.test.x]), torch.cat([self.train.y, self.test.y])))
            self.__dict__["_pool"] = cached
        return cached[1]


def image_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of (N, C, H, W) images (uint8 or [0, 1] floats), computed in float64."""
    xf = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return tuple(round(v, 6) for v in mean.tolist()), tuple(round(v, 6) for v in std.tolist())
