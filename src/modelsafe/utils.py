"""Device, mode and randomness helpers. Every entry point takes ``seed`` and ``device``; randomness flows from
``torch.Generator`` objects made here, never from the global RNG.

``device=None`` has one meaning everywhere (:func:`pick_device`): follow the model the function is given, and
where it is given none, CUDA when available, else CPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

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


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a model with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def pick_device(device: str | torch.device | None, model: nn.Module | None = None) -> torch.device:
    """``device`` resolved (:func:`resolve_device`); ``None`` means ``model``'s device when a model is given."""
    if device is None and model is not None:
        return model_device(model)
    return resolve_device(device)


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put ``modules`` (and all their submodules) in eval mode for the block, then give every submodule back
    the train/eval flag it had, even when the block raises."""
    saved = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, flag in saved:
            m.training = flag


def host_to_device(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU ``tensor`` (cast to ``dtype`` if given) on ``device`` without making the host wait for the device:
    on CUDA it is pinned and copied asynchronously (a copy from pageable memory waits for the stream's queued
    work); elsewhere a plain ``.to``."""
    if dtype is not None:
        tensor = tensor.to(dtype)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def use_channels_last(model: nn.Module, device: torch.device, enabled: bool | None = None) -> bool:
    """Whether ``model`` should run in the ``channels_last`` memory format on ``device``: ``enabled`` when it is
    given, else (``None``, automatic) when ``device`` is CUDA and the model has a 2-D convolution (where
    cuDNN's NHWC kernels are faster; on CPU the layout rarely helps). Only the layout changes, not the values."""
    if enabled is not None:
        return enabled
    five_d = any(t.dim() == 5 for t in [*model.parameters(), *model.buffers()])  # channels_last is 4-D only
    return device.type == "cuda" and not five_d and any(isinstance(m, nn.Conv2d) for m in model.modules())


def to_channels_last(model: nn.Module) -> nn.Module:
    """``model`` with every 4-D parameter and buffer in the ``channels_last`` memory format (in place; other
    tensors untouched). A convolution with NHWC weights computes in NHWC whatever the layout of its input."""
    return model.to(memory_format=torch.channels_last)


def is_channels_last(model: nn.Module) -> bool:
    """Whether some 4-D parameter of ``model`` is in the ``channels_last`` format (and not also in the default
    one, as tensors with one channel or 1×1 kernels can be)."""
    return any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters())


def batch_layout(inputs: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """An image batch (N, C, H, W) in the ``channels_last`` format when ``channels_last`` (so that a step on an
    NHWC model stays NHWC); other inputs, or ``channels_last=False``, as they are."""
    if channels_last and inputs.dim() == 4:
        return inputs.contiguous(memory_format=torch.channels_last)
    return inputs


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
