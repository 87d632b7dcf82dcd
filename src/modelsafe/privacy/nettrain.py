"""Training an attack network on cached features of members (label 1) and non-members (label 0).

As in the SafeCompress code, every step concatenates one member batch and one non-member batch
(``batch_size`` each) and takes one Adam step on the BCE of the membership logits. An epoch covers the larger
of the two sets once (the smaller one is cycled), so both sets are always equally represented."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

Features = tuple[torch.Tensor, ...]


def take(features: Features, idx: torch.Tensor) -> Features:
    return tuple(f[idx] for f in features)


def cat(a: Features, b: Features) -> Features:
    return tuple(torch.cat([x, y]) for x, y in zip(a, b))


def _cycled(n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    reps = math.ceil(length / n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:length]


def bce_step(net: nn.Module, optimizer: torch.optim.Optimizer, members: Features, nonmembers: Features) -> float:
    """One Adam step on a member batch + non-member batch; returns the batch loss."""
    net.train()
    feats = cat(members, nonmembers)
    target = torch.cat([torch.ones(members[0].shape[0]), torch.zeros(nonmembers[0].shape[0])]).to(feats[0].device)
    loss = F.binary_cross_entropy_with_logits(net(*feats), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def net_logits(net: nn.Module, features: Features, batch_size: int = 1024) -> torch.Tensor:
    """Membership logits (N,) of ``net`` in eval mode, on the CPU as float64."""
    net.eval()
    n = features[0].shape[0]
    return torch.cat([net(*take(features, slice(i, i + batch_size))).double().cpu() for i in range(0, n, batch_size)])


def train_epochs(net: nn.Module, optimizer: torch.optim.Optimizer, members: Features, nonmembers: Features, *,
                 epochs: int, batch_size: int, gen: torch.Generator,
                 select: Callable[[nn.Module], float] | None = None, progress: bool = False,
                 desc: str = "attack") -> list[dict]:
    """Train for ``epochs``; with ``select`` (higher is better, evaluated after each epoch) the net ends with
    the weights of the best epoch (first best on ties). Returns one dict per epoch: epoch, loss[, select]."""
    n1, n0 = members[0].shape[0], nonmembers[0].shape[0]
    steps = math.ceil(max(n1, n0) / batch_size)
    history: list[dict] = []
    best_value, best_state = -math.inf, None
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False):
        im, iu = _cycled(n1, steps * batch_size, gen), _cycled(n0, steps * batch_size, gen)
        losses = [bce_step(net, optimizer, take(members, im[s * batch_size:(s + 1) * batch_size]),
                           take(nonmembers, iu[s * batch_size:(s + 1) * batch_size])) for s in range(steps)]
        row = {"epoch": epoch + 1, "loss": sum(losses) / len(losses)}
        if select is not None:
            row["select"] = value = float(select(net))
            if value > best_value:
                best_value, best_state = value, copy.deepcopy(net.state_dict())
        history.append(row)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return history


def split_features(features: Features, fraction: float, gen: torch.Generator) -> tuple[Features, Features]:
    """Randomly split cached features into (train, validation) with ``fraction`` going to validation
    (at least one sample each side)."""
    n = features[0].shape[0]
    n_val = min(n - 1, max(1, round(fraction * n)))
    order = torch.randperm(n, generator=gen)
    return take(features, order[n_val:]), take(features, order[:n_val])


def to_device(features: Sequence[torch.Tensor], device: torch.device) -> Features:
    return tuple(f.to(device) for f in features)
