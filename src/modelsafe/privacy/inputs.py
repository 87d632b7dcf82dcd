"""What attacks take in: sample sets (``TensorData`` or an ``(x, y)`` pair of tensors) and a target model, and
the checks every attack runs on them before any work starts."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.utils import eval_mode, model_device

Samples = TensorData | tuple[torch.Tensor, torch.Tensor]


def as_samples(data: Samples, name: str) -> TensorData:
    """``data`` as :class:`TensorData`; an empty set or a malformed pair is an error naming ``name``.
    ``x`` may hold images (uint8 or float NCHW), tabular features (N, F) or token ids (N, L)."""
    if isinstance(data, TensorData):
        out = data
    elif isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        if data[0].shape[0] != data[1].shape[0]:
            raise ModelsafeError(f"{name}: x has {data[0].shape[0]} samples but y has {data[1].shape[0]}")
        if data[1].dim() != 1 or data[1].is_floating_point():
            raise ModelsafeError(f"{name}: labels must be a 1-D tensor of class indices, got {tuple(data[1].shape)} "
                                 f"{data[1].dtype}")
        out = TensorData(data[0], data[1])
    else:
        raise ModelsafeError(f"{name} must be a TensorData or an (x, y) pair of tensors, got {type(data).__name__}")
    if len(out) == 0:
        raise ModelsafeError(f"{name} is empty")
    if int(out.y.min()) < 0:
        raise ModelsafeError(f"{name}: labels must be >= 0, got {int(out.y.min())}")
    return out


def sample_digests(data: TensorData) -> list[bytes]:
    """One 16-byte digest per sample of its input and label (identical samples share a digest)."""
    x = data.x.detach().cpu().contiguous()
    x = (x.flatten(1) if x.dim() > 1 else x[:, None]).numpy()
    y = data.y.cpu().numpy()
    return [hashlib.blake2b(row.tobytes() + int(label).to_bytes(8, "little", signed=True), digest_size=16).digest()
            for row, label in zip(x, y)]


def check_disjoint(members: TensorData, nonmembers: TensorData, what: str) -> None:
    """Members and non-members must not share a sample (identical input and label)."""
    shared = set(sample_digests(members)) & set(sample_digests(nonmembers))
    if shared:
        raise ModelsafeError(f"{what}: {len(shared)} sample(s) appear among both the members and the non-members; "
                             "membership sets must be disjoint")


def check_num_classes(data: TensorData, num_classes: int, name: str) -> None:
    top = int(data.y.max())
    if top >= num_classes:
        raise ModelsafeError(f"{name}: labels go up to {top} but the target outputs {num_classes} classes "
                             "(class-count mismatch)")


def target_device(model: nn.Module, device: torch.device | None) -> torch.device:
    """``device`` if given (the model is moved there), else where the model's parameters live."""
    if device is not None:
        model.to(device)
        return device
    return model_device(model)



def check_logits(logits: torch.Tensor, name: str) -> torch.Tensor:
    """Logits must be a finite (N, C) tensor with C >= 2."""
    if logits.dim() != 2 or logits.shape[1] < 2:
        raise ModelsafeError(f"{name}: the target must output (N, C) logits with C >= 2, got {tuple(logits.shape)}")
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        raise ModelsafeError(f"{name}: the target produced NaN/inf logits for {int(bad.sum())} of {logits.shape[0]} "
                             "samples; the model is broken (diverged training?) and cannot be audited")
    return logits


@torch.no_grad()
def target_logits(target: nn.Module, data: TensorData, name: str, *, batch_size: int = 512,
                  device: torch.device | None = None) -> torch.Tensor:
    """The target's (N, C) logits on ``data`` (eval mode, float32, on the CPU), checked to be finite and to
    cover every label."""
    dev = target_device(target, device)
    with eval_mode(target):
        chunks = [target(x).float().cpu() for x, _ in data.batches(batch_size, device=dev)]
    logits = check_logits(torch.cat(chunks), name)
    check_num_classes(data, logits.shape[1], name)
    return logits
