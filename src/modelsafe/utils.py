"""Device and randomness helpers. Every entry point takes ``seed`` and ``device``; randomness flows from
``torch.Generator`` objects made here, never from the global RNG."""

from __future__ import annotations

import torch

from modelsafe.errors import ModelsafeError


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` picks CUDA when available, else CPU. An unavailable device is an error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelsafeError(f"unknown device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelsafeError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelsafeError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A generator on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


def derive_seed(seed: int, *tags: str | int) -> int:
    """A stable 63-bit seed for a named sub-task, so independent streams never share state."""
    import hashlib

    digest = hashlib.sha256(repr((int(seed),) + tuple(tags)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
