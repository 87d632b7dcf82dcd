"""Small models and batches for the sparse-training tests (helpers are handed out as fixtures)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """1x6x6 input -> conv(4, 3x3) -> conv(8, 3x3) -> linear(32 -> 10). Weight shapes (4,1,3,3), (8,4,3,3),
    (10,32): 36, 288 and 320 weights."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.conv2 = nn.Conv2d(4, 8, 3)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def make_net(seed: int = 0) -> TinyNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TinyNet()


def make_batches(n: int, batch: int = 16, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(batch, 1, 6, 6, generator=gen), torch.randint(0, 10, (batch,), generator=gen))
            for _ in range(n)]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch) -> None:
    x, y = batch
    optimizer.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one intra-op thread is faster and immune to oversubscribed CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def net() -> TinyNet:
    return make_net()


@pytest.fixture
def batches() -> list:
    return make_batches(120)


@pytest.fixture
def tools():
    """``tools.make_net(seed)``, ``tools.make_batches(n, batch, seed)``, ``tools.train_step(model, opt, batch)``."""
    from types import SimpleNamespace

    return SimpleNamespace(make_net=make_net, make_batches=make_batches, train_step=train_step)
