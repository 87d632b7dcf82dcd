"""A fitted attack sent to another process scores like the original, and scores computed in interleaved shares
put back together equal the scores of one call, for every registered attack family."""

import numpy as np
import pytest
import torch

from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.privacy import ReferenceModels, create_mia
from modelsafe.privacy.references import FitTrainer
from modelsafe.privacy.sharded import _fitted_state, _interleave, _load_fitted_state, placement
from modelsafe.training import TrainConfig

from .conftest import tabular_model

TRAINER = FitTrainer(TrainConfig(epochs=5, lr=0.05, batch_size=64, weight_decay=0.0), device="cpu")
ATTACKS = {"loss": {}, "loss (per-class)": {"per_class": True}, "blackbox-nn": {"epochs": 2},
           "whitebox": {"epochs": 2}, "shadow": {"epochs": 2}, "lira": {}, "rmia": {}, "lira-online": {},
           "rmia-online": {}}


@pytest.fixture(scope="module")
def setting(memorised):
    m = memorised
    offline = ReferenceModels.train(m.population, tabular_model, TRAINER, num_models=2, seed=3)
    parts = (m.known_members, m.known_nonmembers, m.eval_members, m.eval_nonmembers)
    scored = TensorData(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))
    online = ReferenceModels.train_balanced(scored, tabular_model, TRAINER, num_models=2, seed=4)

    def make(label: str):
        name = label.split(" ")[0]
        refs = {"shadow": offline, "lira": offline, "rmia": offline, "lira-online": online, "rmia-online": online}
        extra = {"references": refs[name]} if name in refs else {}
        return create_mia(name, seed=7, device="cpu", **ATTACKS[label], **extra)
    return m, make


@pytest.mark.parametrize("label", list(ATTACKS))
def test_a_sent_attack_scored_in_shares_equals_the_fitted_attack_scoring_everything(setting, label):
    m, make = setting
    fitted = make(label).fit(m.target, m.known_members, m.known_nonmembers)
    receiver = make(label)
    own_references = getattr(receiver, "references", None)
    _load_fitted_state(receiver, _fitted_state(fitted), torch.device("cpu"))
    assert receiver.threshold_ == fitted.threshold_ and receiver.fit_seconds_ == fitted.fit_seconds_
    if own_references is not None:  # reference models are not sent: every rank has its own
        assert receiver.references is own_references
    for samples in (m.eval_members, m.eval_nonmembers):
        n = len(samples)
        shares = [receiver.score(m.target, samples.subset(torch.arange(r, n, 3))) for r in range(3)]
        whole = fitted.score(m.target, samples)
        assert not np.allclose(whole, whole[0])  # a constant score would hide a wrong order
        np.testing.assert_allclose(_interleave(shares), whole, rtol=1e-5, atol=1e-6)


def test_interleave_restores_sample_order():
    np.testing.assert_array_equal(_interleave([np.array([0.0, 3, 6]), np.array([1.0, 4]), np.array([2.0, 5])]),
                                  np.arange(7.0))
    np.testing.assert_array_equal(_interleave([np.array([0.0]), np.zeros(0)]), [0.0])


def test_device_attributes_and_accelerator_storages_land_on_the_receiving_device(setting):
    m, make = setting
    fitted = make("blackbox-nn").fit(m.target, m.known_members, m.known_nonmembers)
    fitted.device_ = torch.device("cuda", 0)  # as if fitted on another rank's GPU
    receiver = make("blackbox-nn")
    _load_fitted_state(receiver, _fitted_state(fitted), torch.device("cpu"))
    assert receiver.device_ == torch.device("cpu") and receiver.device == fitted.device
    storage = torch.ones(3).untyped_storage()
    place = placement(torch.device("cpu"))
    assert place(storage, "cpu") is storage
    assert place(storage, "cuda:1").device == torch.device("cpu")


def test_an_attack_that_cannot_be_sent_is_an_error_naming_it(setting):
    m, make = setting
    attack = make("loss").fit(m.target, m.known_members, m.known_nonmembers)
    attack.hook = lambda x: x
    with pytest.raises(ModelsafeError, match="attack 'loss' cannot be sent to the other ranks.*unsent_attributes"):
        _fitted_state(attack)
