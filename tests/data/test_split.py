import pytest
import torch

from modelsafe.data import MembershipSplit, SplitSpec, get_recipe
from modelsafe.data.info import TensorData
from modelsafe.data.split import SET_NAMES
from modelsafe.errors import ModelsafeError, UnknownNameError

SPEC = SplitSpec(members=100, validation=20, known_fraction=0.5, nonmember_source="train", reference=40,
                 eval_nonmembers=50, population=30)


def make(spec=SPEC, seed=0, n_train=300, n_test=80):
    return MembershipSplit.from_sizes("toy", n_train, n_test, spec, seed)


def test_sizes_and_disjointness():
    s = make()
    assert s.sizes() == {"members": 100, "validation": 20, "test": 80, "attack_known_members": 50,
                         "attack_reference": 40, "eval_members": 50, "eval_nonmembers": 50, "population": 30}
    groups = [set(s[k].tolist()) for k in ("members", "validation", "attack_reference", "eval_nonmembers",
                                           "population")]
    assert sum(map(len, groups)) == len(set().union(*groups))
    assert set(s["attack_known_members"].tolist()) | set(s["eval_members"].tolist()) == groups[0]
    assert max(max(g) for g in groups) < 300  # train-sourced sets stay in the train part of the pool
    assert set(s["test"].tolist()) == set(range(300, 380))


def test_deterministic_and_seed_sensitive():
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert all(torch.equal(a[k], b[k]) for k in SET_NAMES)
    assert not torch.equal(a["members"], c["members"])


def test_safecompress_recipe_uses_test_for_nonmembers():
    s = MembershipSplit.from_sizes("toy", 1000, 200, get_recipe("safecompress"), seed=0)
    assert s.sizes()["validation"] == 100 and s.sizes()["members"] == 900
    assert s.sizes()["attack_reference"] == 100 and s.sizes()["eval_nonmembers"] == 100
    assert int(s["attack_reference"].min()) >= 1000 and int(s["eval_nonmembers"].min()) >= 1000


def test_save_load_roundtrip(tmp_path):
    s = make()
    s.save(tmp_path / "split.json")
    t = MembershipSplit.load(tmp_path / "split.json")
    assert all(torch.equal(s[k], t[k]) for k in SET_NAMES) and t.spec == s.spec


def test_loaded_split_is_validated(tmp_path):
    data = make().to_dict()
    data["sets"]["eval_nonmembers"][0] = data["sets"]["members"][0]
    with pytest.raises(ModelsafeError, match="overlap"):
        MembershipSplit.from_dict(data)
    with pytest.raises(ModelsafeError, match="does not exist"):
        MembershipSplit.load(tmp_path / "missing.json")


@pytest.mark.parametrize("spec, match", [
    (SplitSpec(members=500, validation=10), "not enough samples for members"),
    (SplitSpec(members=100, validation=-1), "validation"),
    (SplitSpec(members=100, validation=10, known_fraction=1.0), "known_fraction"),
    (SplitSpec(members=100, nonmember_source="elsewhere"), "nonmember_source"),
    (SplitSpec(members=100, validation=10, reference=0), "attack_reference.*empty"),
    (SplitSpec(members=None, validation=10, nonmember_source="train"), "needs nonmember_source='test'"),
])
def test_bad_specs(spec, match):
    with pytest.raises(ModelsafeError, match=match):
        make(spec)


def test_fractional_sizes_and_unknown_recipe():
    s = make(SplitSpec(members=0.5, validation=0.1, reference=0.1, eval_nonmembers=0.1))
    assert s.sizes()["members"] == 150 and s.sizes()["validation"] == 30 and s.sizes()["attack_reference"] == 30
    with pytest.raises(UnknownNameError):
        get_recipe("nope")


def test_data_selects_the_right_samples(blobs):
    s = MembershipSplit.create(blobs, SplitSpec(members=100, validation=20, nonmember_source="test"), seed=0)
    pool = TensorData(torch.cat([blobs.train.x, blobs.test.x]), torch.cat([blobs.train.y, blobs.test.y]))
    ref = s.data(blobs, "attack_reference")
    assert torch.equal(ref.x, pool.x[s["attack_reference"]]) and torch.equal(ref.y, pool.y[s["attack_reference"]])
    assert torch.equal(s.data(blobs, "members").y, pool.y[s["members"]])


def test_the_pool_is_built_once_and_follows_a_replaced_split(blobs):
    first = blobs.pool()
    assert blobs.pool() is first  # cached: many sets of a split cost one concatenation
    assert len(first) == len(blobs.train) + len(blobs.test)
    blobs.train = blobs.train.subset(torch.arange(10))
    assert len(blobs.pool()) == 10 + len(blobs.test)


def test_population_none_takes_every_unused_train_sample():
    s = make(SplitSpec(members=100, validation=20, reference=40, eval_nonmembers=50, population=None))
    used = sum(s.sizes()[k] for k in ("members", "validation", "attack_reference", "eval_nonmembers"))
    assert s.sizes()["population"] == 300 - used
    with pytest.raises(ModelsafeError, match="fixed members"):
        make(SplitSpec(members=None, validation=10, nonmember_source="test", population=None))
