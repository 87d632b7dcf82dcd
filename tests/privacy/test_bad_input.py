"""Bad input gets a ModelsafeError naming the problem."""

import pytest
import torch
from torch import nn

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy import BlackBoxNNAttack, MetricAttack, create_mia

from .conftest import CLASSES


class Broken(nn.Module):
    """Returns NaN logits for the first sample of every batch."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(20, CLASSES)

    def forward(self, x):
        out = self.linear(x)
        return torch.cat([torch.full_like(out[:1], float("nan")), out[1:]])


@pytest.mark.parametrize("attack", [MetricAttack("loss"), BlackBoxNNAttack(epochs=1)], ids=lambda a: a.label)
def test_overlapping_sets(memorised, attack):
    overlap = TensorData(torch.cat([memorised.known_nonmembers.x, memorised.known_members.x[:3]]),
                         torch.cat([memorised.known_nonmembers.y, memorised.known_members.y[:3]]))
    with pytest.raises(ModelsafeError, match="3 sample.*both the members and the non-members"):
        attack.fit(memorised.target, memorised.known_members, overlap)
    attack.fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="must be disjoint"):
        attack.evaluate(memorised.target, memorised.eval_members, memorised.eval_members)


def test_empty_sets(memorised):
    empty = memorised.known_members.subset([])
    with pytest.raises(ModelsafeError, match="known_members is empty"):
        MetricAttack("loss").fit(memorised.target, empty, memorised.known_nonmembers)
    attack = MetricAttack("loss").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="nonmembers is empty"):
        attack.evaluate(memorised.target, memorised.eval_members, (torch.empty(0, 20), torch.empty(0).long()))


def test_class_count_mismatch(memorised):
    bad = TensorData(memorised.known_members.x, memorised.known_members.y.clone())
    bad.y[0] = CLASSES + 2
    with pytest.raises(ModelsafeError, match="class-count mismatch"):
        MetricAttack("entropy").fit(memorised.target, bad, memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="class-count mismatch"):
        BlackBoxNNAttack(epochs=1).fit(memorised.target, bad, memorised.known_nonmembers)
    fitted = MetricAttack("loss").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    other = nn.Sequential(nn.Linear(20, CLASSES + 5))  # a target with more classes than the fitted one
    with pytest.raises(ModelsafeError, match="fitted for 10 classes but the target outputs 15"):
        fitted.score(other, memorised.eval_members)


@pytest.mark.parametrize("name, options", [("loss", {}), ("blackbox-nn", {"epochs": 1}), ("whitebox", {"epochs": 1})])
def test_nan_logits(memorised, name, options):
    with pytest.raises(ModelsafeError, match=r"NaN/inf logits for \d+ of \d+ samples"):
        create_mia(name, **options).fit(Broken(), memorised.known_members, memorised.known_nonmembers)


def test_misuse(memorised):
    with pytest.raises(ModelsafeError, match="not fitted"):
        MetricAttack("loss").score(memorised.target, memorised.eval_members)
    with pytest.raises(ModelsafeError, match="pass eval_members"):
        BlackBoxNNAttack(select_on="eval").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="select_on must be one of"):
        BlackBoxNNAttack(select_on="test")
    with pytest.raises(ModelsafeError, match="needs reference models"):
        create_mia("rmia").fit(memorised.target, memorised.known_members, memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="must be a TensorData"):
        MetricAttack("loss").fit(memorised.target, [1, 2, 3], memorised.known_nonmembers)
    with pytest.raises(ModelsafeError, match="labels must be a 1-D tensor"):
        MetricAttack("loss").fit(memorised.target, (torch.zeros(3, 20), torch.zeros(3, 2).long()),
                                 memorised.known_nonmembers)
