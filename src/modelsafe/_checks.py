"""Argument checks shared by every entry point. Each raises :class:`ModelsafeError` with a message that
names the argument and the rule it broke, before any work starts."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

from modelsafe.errors import ModelsafeError


def check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelsafeError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_non_negative_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ModelsafeError(f"{name} must be a non-negative integer, got {value!r}")
    return value


SEED_MAX = 2**63 - 1


def check_seed(name: str, value: int) -> int:
    """A seed is an integer in [0, 2**63 - 1] (what every generator accepts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= SEED_MAX:
        raise ModelsafeError(f"{name} must be an integer in [0, {SEED_MAX}], got {value!r:.40}")
    return int(value)


def check_seeds(name: str, values) -> list[int]:
    """A non-empty list of distinct seeds (a repeated seed would make a mean ± std over identical runs)."""
    values = [check_seed(name, v) for v in values]
    if not values:
        raise ModelsafeError(f"{name} names no seed")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ModelsafeError(f"{name} repeats seed(s) {', '.join(map(str, repeated))}; give distinct seeds")
    return values


def check_positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelsafeError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_non_negative(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ModelsafeError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_fraction(name: str, value: float, *, closed_low: bool = True, closed_high: bool = True) -> float:
    """``value`` must lie in [0, 1]; ``closed_low``/``closed_high`` choose whether the ends are allowed."""
    ok = isinstance(value, (int, float)) and math.isfinite(value)
    if ok:
        ok = (value >= 0 if closed_low else value > 0) and (value <= 1 if closed_high else value < 1)
    if not ok:
        lo, hi = "[" if closed_low else "(", "]" if closed_high else ")"
        raise ModelsafeError(f"{name} must lie in {lo}0, 1{hi}, got {value!r}")
    return float(value)


def check_density(value: float, name: str = "density") -> float:
    """A sparsity density: the fraction of weights kept, in (0, 1]."""
    return check_fraction(name, value, closed_low=False, closed_high=True)


def check_choice(name: str, value: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if value not in choices:
        raise ModelsafeError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_images(x: torch.Tensor, name: str = "images", channels: int | None = None) -> torch.Tensor:
    """Images are float NCHW tensors with every value in [0, 1] (the project-wide convention)."""
    if not isinstance(x, torch.Tensor):
        raise ModelsafeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ModelsafeError(f"{name} must be a 4-D NCHW batch, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ModelsafeError(f"{name} must be floating point in [0, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[1] != channels:
        raise ModelsafeError(f"{name} must have {channels} channel(s), got shape {tuple(x.shape)}")
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
            raise ModelsafeError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def check_labels(y: torch.Tensor, batch: int, num_classes: int | None = None, name: str = "labels") -> torch.Tensor:
    """Labels are int64 class indices, one per sample, in [0, num_classes)."""
    if not isinstance(y, torch.Tensor):
        raise ModelsafeError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.dim() != 1 or y.shape[0] != batch:
        raise ModelsafeError(f"{name} must have shape ({batch},) to match the batch, got {tuple(y.shape)}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ModelsafeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or (num_classes is not None and int(y.max()) >= num_classes)):
        raise ModelsafeError(f"{name} must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
    return y.long()
