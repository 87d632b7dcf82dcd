"""Shared fixtures: a synthetic tabular task (fast, and easy to memorise) and a target that memorises 500
members of it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from modelsafe.data.info import TensorData
from modelsafe.models import create_model
from modelsafe.training import fit

FEATURES, CLASSES = 20, 10


def synthetic(n: int, seed: int, noise: float = 0.3) -> TensorData:
    """Gaussian features labelled by a fixed random linear teacher, a fraction ``noise`` of labels resampled at
    random: a model can only fit those by memorising them."""
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.randn(FEATURES, CLASSES, generator=torch.Generator().manual_seed(123))
    x = torch.randn(n, FEATURES, generator=gen)
    y = (x @ teacher).argmax(1)
    flip = torch.rand(n, generator=gen) < noise
    y[flip] = torch.randint(0, CLASSES, (int(flip.sum()),), generator=gen)
    return TensorData(x, y)


def tabular_model(seed: int) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model("mlp", CLASSES, in_channels=FEATURES, image_size=None, width=0.5)


def train(model: torch.nn.Module, data: TensorData, seed: int = 0) -> torch.nn.Module:
    fit(model, data, epochs=60, lr=0.05, batch_size=64, weight_decay=0.0, seed=seed, progress=False, device="cpu")
    return model


@dataclass
class Memorised:
    target: torch.nn.Module
    known_members: TensorData
    eval_members: TensorData
    known_nonmembers: TensorData
    eval_nonmembers: TensorData
    population: TensorData
    unseen: TensorData  # 6000 more samples the target never saw (controls)


@pytest.fixture(scope="session")
def memorised() -> Memorised:
    """An MLP trained to 100% accuracy on 500 members (test accuracy about 0.4)."""
    members = synthetic(500, seed=1)
    pool = synthetic(10000, seed=2)
    target = train(tabular_model(0), members)
    return Memorised(target, members.subset(range(250)), members.subset(range(250, 500)),
                     pool.subset(range(250)), pool.subset(range(250, 500)), pool.subset(range(500, 4000)),
                     pool.subset(range(4000, 10000)))
