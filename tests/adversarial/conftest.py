import pytest
import torch
from torch import nn

from modelsafe.models import create_model


class CountingModel(nn.Module):
    """Wraps a model and counts forward calls and rows."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls = 0
        self.rows = 0

    def forward(self, x):
        self.calls += 1
        self.rows += x.shape[0]
        return self.model(x)


@pytest.fixture(scope="session")
def cnn():
    torch.manual_seed(0)
    return create_model("cnn", 10, 1, 12).eval()


@pytest.fixture(scope="session")
def mlp():
    torch.manual_seed(1)
    return create_model("mlp", 10, 1, 12).eval()


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 1, 12, 12, generator=g)


@pytest.fixture
def labels():
    return torch.tensor([0, 1, 2, 3, 4, 5])


@pytest.fixture(scope="module")
def tiny_setup():
    """(tiny float64 conv model, 3 images of reference.SHAPE, the model's predicted labels)."""
    from .reference import tiny_images, tiny_model

    model, x0 = tiny_model(), tiny_images()
    with torch.no_grad():
        y = model(x0).argmax(1)
    return model, x0, y
