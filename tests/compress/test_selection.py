import pytest

from modelsafe.compress.safecompress import CandidateSpec, SafeCompressConfig, get_config
from modelsafe.compress.selection import Objective, select
from modelsafe.errors import ModelsafeError, UnknownNameError


def test_objective_reductions():
    risks = {"bmia": 0.2, "wmia": 0.4}
    assert Objective()(0.9, risks) == pytest.approx(0.5)
    assert Objective(reduce="mean")(0.9, risks) == pytest.approx(0.6)
    assert Objective(weight=0.5, reduce="sum")(0.9, risks) == pytest.approx(0.6)


def test_select_is_argmax_with_accuracy_tiebreak():
    rows = [{"accuracy": 0.80, "risks": {"b": 0.10}}, {"accuracy": 0.85, "risks": {"b": 0.15}},
            {"accuracy": 0.90, "risks": {"b": 0.05}}, {"accuracy": 0.70, "risks": {"b": 0.0}}]
    assert select(rows, Objective()) == 2
    tie = [{"accuracy": 0.7, "risks": {"b": 0.0}}, {"accuracy": 0.8, "risks": {"b": 0.1}}]
    assert select(tie, Objective()) == 1  # same objective 0.7: the more accurate wins
    assert select([{"accuracy": 0.5, "risks": {}}] * 3, Objective()) == 0


def test_candidate_spec_parsing():
    spec = CandidateSpec.parse("magnitude/random#3@x2")
    assert (spec.strategy.prune, spec.strategy.grow, spec.strategy.seed, spec.multiplier) == (
        "magnitude", "random", 3, 2.0)
    assert spec.at(0.3).drop_fraction == pytest.approx(0.6) and spec.at(0.8).drop_fraction == 1.0
    assert CandidateSpec.parse("set/gradient").at(0.3).drop_fraction is None
    with pytest.raises(ModelsafeError):
        CandidateSpec.parse("magnitude/random@xz")
    with pytest.raises(UnknownNameError):
        CandidateSpec.parse("magnitude/telepathy")


@pytest.mark.parametrize("bad, match", [
    (dict(density=0.0), "density"), (dict(density=1.5), "density"),
    (dict(select=False), "exactly one candidate"), (dict(tests=()), "safety test"),
    (dict(objective_reduce="median"), "reduce"), (dict(minmax_start=1.0), "minmax_start"),
])
def test_bad_configs(bad, match):
    with pytest.raises(ModelsafeError, match=match):
        SafeCompressConfig(**bad)


def test_named_configs():
    assert get_config("mmia-safecompress").tests == ("bmia", "wmia")
    official = get_config("safecompress-official")
    assert official.candidates == ("magnitude/random",) and not official.select and official.minmax_lambda == 0.1
    with pytest.raises(UnknownNameError, match="bmia-safecompress"):
        get_config("cmia-safecompress")
