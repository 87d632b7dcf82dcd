"""SafeCompress end to end on a tiny learnable problem (seconds on a CPU)."""

import hashlib

import pytest
import torch

from modelsafe.compress.safecompress import SafeCompress, SafeCompressConfig, run_safecompress
from modelsafe.compress.safety import SafetyData
from modelsafe.compress.selection import Objective
from modelsafe.data import MembershipSplit, SplitSpec
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import create_model_for
from modelsafe.training import Callback, TrainConfig

from ..conftest import make_blobs

SPEC = SplitSpec(members=240, validation=60, nonmember_source="train", reference=120, eval_nonmembers=120)
TRAIN = TrainConfig(epochs=4, batch_size=32, lr=0.05)
FAST = dict(update_interval=6, refresh_steps=5, attacker_batch_size=16, probe_steps=2, validation_samples=60,
            minmax_start=0.5, update_end=0.9)


@pytest.fixture(scope="module")
def problem():
    data = make_blobs(n_train=700, n_test=100, num_classes=4, size=8, seed=1)
    return data, MembershipSplit.create(data, SPEC, seed=0)


def new_model(data):
    torch.manual_seed(0)
    return create_model_for("cnn", data.info, width=0.5)


def config(**kw):
    return SafeCompressConfig(**{"density": 0.2, **FAST, **kw})


def digests(x: torch.Tensor) -> set[bytes]:
    return {hashlib.sha1(row.numpy().tobytes()).digest() for row in x.float().contiguous()}


def test_chosen_candidate_is_objective_argmax(problem):
    data, split = problem
    result = run_safecompress(new_model(data), data, split, config(tests=("bmia", "wmia")), TRAIN,
                              progress=False)
    assert result["selections"] >= 3
    objective = Objective()
    for entry in result["log"]:
        assert len(entry["candidates"]) == 4
        scores = [objective(c["accuracy"], c["risks"]) for c in entry["candidates"]]
        assert scores[entry["chosen"]] == max(scores)
        assert set(entry["candidates"][0]["risks"]) == {"bmia", "wmia"}
    assert result["sparsity"]["nnz"] == result["sparsity"]["target_nnz"]


def test_auc_risk_is_the_threshold_free_advantage(problem):
    data, split = problem
    result = run_safecompress(new_model(data), data, split, config(risk="auc", minmax=False), TRAIN, progress=False)
    rows = [c for entry in result["log"] for c in entry["candidates"]]
    assert rows
    for row in rows:
        figures = row["tests"]["bmia"]
        assert row["risks"]["bmia"] == pytest.approx(2 * figures["auc"] - 1)
    assert any(r["risks"]["bmia"] != pytest.approx(r["tests"]["bmia"]["advantage"]) for r in rows)


def test_attackers_never_see_evaluation_data(problem, monkeypatch):
    data, split = problem
    from modelsafe.privacy.learned import LearnedAttack

    seen: set[bytes] = set()
    original_partial, original_score = LearnedAttack.partial_fit, LearnedAttack.score_model

    def spy_partial(self, target, members, nonmembers, steps=1):
        seen.update(digests(members.x), digests(nonmembers.x))
        return original_partial(self, target, members, nonmembers, steps)

    def spy_score(self, target, members, nonmembers):
        seen.update(digests(members.x), digests(nonmembers.x))
        return original_score(self, target, members, nonmembers)

    monkeypatch.setattr(LearnedAttack, "partial_fit", spy_partial)
    monkeypatch.setattr(LearnedAttack, "score_model", spy_score)
    run_safecompress(new_model(data), data, split, config(), TRAIN, progress=False)
    pool = data.pool()
    evaluation = digests(pool.x[split["eval_members"]]) | digests(pool.x[split["eval_nonmembers"]])
    known = digests(pool.x[split["attack_known_members"]]) | digests(pool.x[split["attack_reference"]])
    assert seen and seen <= known
    assert not seen & evaluation


def test_safety_data_comes_from_attacker_known_sets_only(problem):
    data, split = problem
    sd = SafetyData.from_split(data, split, holdout_fraction=0.25, seed=3)
    pool = data.pool()
    known_m, ref = digests(pool.x[split["attack_known_members"]]), digests(pool.x[split["attack_reference"]])
    assert digests(sd.attacker_members.x) | digests(sd.holdout_members.x) == known_m
    assert digests(sd.attacker_nonmembers.x) | digests(sd.holdout_nonmembers.x) == ref
    assert not digests(sd.attacker_members.x) & digests(sd.holdout_members.x)
    assert len(sd.holdout_members) == 30


def test_density_holds_through_minmax_phase(problem):
    data, split = problem

    class Check(Callback):
        def __init__(self, sc):
            self.sc, self.minmax_steps = sc, 0

        def after_optimizer_step(self, state):
            engine = self.sc.engine
            assert engine.nnz == engine.target_nnz
            nonzero = sum(int((dict(state.model.named_parameters())[n] != 0).sum()) for n in engine.masks)
            assert nonzero <= engine.target_nnz
            self.minmax_steps += self.sc.minmax_active(state)

    from modelsafe.compress.safety import create_safety_tests
    from modelsafe.training import fit

    cfg = config(minmax_start=0.25)
    sc = SafeCompress(cfg, create_safety_tests(["bmia"], bmia={"batch_size": 16, "refresh_steps": 5}),
                      SafetyData.from_split(data, split), split.data(data, "validation"),
                      split.data(data, "members"))
    check = Check(sc)
    fit(new_model(data), split.data(data, "members"), TRAIN, callbacks=[sc, check], progress=False)
    assert check.minmax_steps > 10


# kept 5-step probes: the update at step 12 owes steps 13-17, so the checkpoint after epoch 2 (step 16) has
# owed steps left that the resumed run must still pass over
KEPT = dict(keep_probe=True, probe_steps=5, candidates=("magnitude/random", "magnitude/random~2"))


@pytest.mark.parametrize("changes", [{}, pytest.param(KEPT, marks=pytest.mark.slow)], ids=["default", "kept"])
def test_resume_after_kill_gives_same_masks_attackers_and_log(problem, tmp_path, changes):
    data, split = problem
    reference = run_safecompress(new_model(data), data, split, config(**changes), TRAIN, progress=False,
                                 run_dir=tmp_path / "ref")

    from modelsafe.compress import safecompress as sc_module

    class Killed(Exception):
        pass

    original = sc_module.SafeCompress.on_epoch_end

    def dying(self, state):
        original(self, state)
        if state.epoch == 2:
            raise Killed

    sc_module.SafeCompress.on_epoch_end = dying
    try:
        with pytest.raises(Killed):
            run_safecompress(new_model(data), data, split, config(**changes), TRAIN, progress=False,
                             run_dir=tmp_path / "k")
    finally:
        sc_module.SafeCompress.on_epoch_end = original
    torch.manual_seed(123)  # a different initialisation: everything must come back from the checkpoint
    model = create_model_for("cnn", data.info, width=0.5)
    resumed = run_safecompress(model, data, split, config(**changes), TRAIN, progress=False, run_dir=tmp_path / "k")
    def timeless(log):
        return [{k: v for k, v in entry.items() if k != "seconds"} for entry in log]

    assert timeless(resumed["log"]) == timeless(reference["log"])
    assert resumed["sparsity"]["nnz"] == reference["sparsity"]["nnz"]
    assert resumed["history"] == reference["history"]
    if changes:
        assert [e["step"] for e in reference["log"]][:2] == [6, 12]  # the straddle described above


def test_bad_input_fails_before_training(problem):
    data, split = problem
    with pytest.raises(UnknownNameError, match="bmia"):
        run_safecompress(new_model(data), data, split, config(tests=("xmia",)), TRAIN, progress=False)
    with pytest.raises(ModelsafeError, match="density"):
        run_safecompress(new_model(data), data, split, config(density=0.0), TRAIN, progress=False)
    with pytest.raises(UnknownNameError, match="unknown safety-test risk 'accuracy'; valid names: advantage, auc"):
        run_safecompress(new_model(data), data, split, config(risk="accuracy"), TRAIN, progress=False)
    bad = split.to_dict()
    bad["sets"]["eval_members"] = bad["sets"]["eval_members"][:-1] + [bad["sets"]["attack_known_members"][0]]
    with pytest.raises(ModelsafeError):
        run_safecompress(new_model(data), data, MembershipSplit.from_dict(bad), config(), TRAIN, progress=False)


def test_under_autocast_the_attacker_steps_run_in_full_precision(problem, monkeypatch):
    # the training step (and the defence term) run under bfloat16 autocast; the min-max attacker's own steps
    # must not, as at a refresh
    from modelsafe.compress.safety import MIASafetyTest

    data, split = problem
    seen, step = [], MIASafetyTest.attacker_step

    def spy(self, model):
        seen.append(torch.is_autocast_enabled("cpu"))
        step(self, model)

    monkeypatch.setattr(MIASafetyTest, "attacker_step", spy)
    train = TrainConfig(epochs=2, batch_size=32, lr=0.05, autocast=True)
    run_safecompress(new_model(data), data, split, config(minmax_start=0.5), train, progress=False)
    assert seen and not any(seen)
