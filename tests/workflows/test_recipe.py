"""Reference models are trained with the target's recipe: a run folder's config gives it, and the audit of a
sparse target trains sparse reference models."""

import numpy as np
import pytest
import torch

import modelsafe.workflows.recipe as recipe_module
from modelsafe.compress import CompressOptions
from modelsafe.data import MembershipSplit, SplitSpec, load_dataset
from modelsafe.errors import ModelsafeError
from modelsafe.privacy.inputs import sample_digests
from modelsafe.storage.io import load_weights
from modelsafe.training import TrainConfig
from modelsafe.workflows import Recipe, audit_run, compress_run, init_model
from modelsafe.workflows.recipe import MethodTrainer, SplitMethodTrainer

SPEC = SplitSpec(members=300, validation=100, population=400, reference=100, eval_nonmembers=100)


def test_recipe_from_train_and_compress_configs():
    plain = Recipe.from_run_config({"kind": "train", "model": "mlp", "width": 0.5,
                                    "train": {"epochs": 3, "lr": 0.1, "milestones": [0.5, 0.75]}})
    assert plain.method is None and plain.train == TrainConfig(epochs=3, lr=0.1) and plain.width == 0.5
    options = CompressOptions(density=0.2, train=TrainConfig(epochs=2, batch_size=32))
    sparse = Recipe.from_run_config({"kind": "compress", "model": "cnn", "method": "rigl",
                                     "options": options.to_dict()})
    assert sparse.options == options and sparse.train == options.train
    assert isinstance(sparse.trainer("cpu"), MethodTrainer)
    with pytest.raises(ModelsafeError, match="give the target's dataset= and split="):
        Recipe("mlp", method="bmia-safecompress", options=options).trainer()


def test_audit_of_a_sparse_run_trains_sparse_reference_models(tmp_path):
    run = tmp_path / "run"
    options = CompressOptions(density=0.2, update_interval=10, train=TrainConfig(epochs=2, batch_size=32))
    compress_run("rigl", "digits", "mlp", out=run, options=options, split=SPEC, width=0.5, device="cpu",
                 progress=False)
    reports, _ = audit_run(run, ["lira"], reference_models=2, bootstrap=0, device="cpu", progress=False)
    files = sorted((run / "audit" / "references").glob("*/ref-*.safetensors"))
    assert len(files) == 2 and reports["lira"].details["num_models"] == 2
    model = load_weights(files[0], init_model("mlp", load_dataset("digits"), 0.5, 0))
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    kept = sum(int((w != 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert kept == pytest.approx(0.2, abs=0.01)  # trained with the target's method, not densely


SC_OPTIONS = CompressOptions(
    density=0.3, update_interval=4, end=0.9, train=TrainConfig(epochs=2, batch_size=32, lr=0.05),
    extra={"safecompress": {"refresh_steps": 3, "attacker_batch_size": 16, "probe_steps": 1,
                            "validation_samples": 50, "minmax_start": 0.5}})
DP_OPTIONS = CompressOptions(train=TrainConfig(epochs=2, batch_size=32, lr=0.05),
                             extra={"dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}})


def spy_reference_training(monkeypatch) -> list[dict]:
    """Record every compression run the reference trainers start: method, options, training samples and, for
    methods with a membership split, that split's sets (as sample digests)."""
    calls = []
    real = recipe_module.compress

    def spy(method, model, train_data, options, **kw):
        call = {"method": method, "options": options, "train": set(sample_digests(train_data))}
        if kw.get("split") is not None:
            pool = kw["dataset"].pool()
            call["sets"] = {name: set(sample_digests(pool.subset(ids))) for name, ids in kw["split"].sets.items()}
        calls.append(call)
        return real(method, model, train_data, options, **kw)

    monkeypatch.setattr(recipe_module, "compress", spy)
    return calls


def test_a_safecompress_reference_split_draws_its_attacker_as_the_target_did():
    data = load_dataset("digits")
    split = MembershipSplit.create(data, SPEC, seed=0)
    trainer = Recipe("mlp", 0.5, SC_OPTIONS.train, "bmia-safecompress", SC_OPTIONS).trainer(
        "cpu", dataset=data, split=split)
    assert isinstance(trainer, SplitMethodTrainer)
    population = split.data(data, "population")
    indices = torch.arange(0, 400, 2)
    ref_data, ref_split = trainer.reference_split(population, indices, seed=3)
    assert sorted(ref_split["members"].tolist()) == indices.tolist()
    outside = set(range(400)) - set(indices.tolist())
    assert set(ref_split["attack_reference"].tolist()) <= outside
    assert set(ref_split["eval_nonmembers"].tolist()) <= outside
    ratio = split["attack_reference"].numel() / split["attack_known_members"].numel()
    assert ref_split["attack_known_members"].numel() == round(split.spec.known_fraction * 200)
    assert ref_split["attack_reference"].numel() == round(ratio * 100)
    validation = set(sample_digests(ref_split.data(ref_data, "validation")))
    assert validation == set(sample_digests(split.data(data, "validation")))


def test_auditing_a_safecompress_run_trains_safecompress_references(tmp_path, monkeypatch):
    run = tmp_path / "run"
    compress_run("bmia-safecompress", "digits", "mlp", out=run, options=SC_OPTIONS, split=SPEC, width=0.5,
                 device="cpu", progress=False)
    calls = spy_reference_training(monkeypatch)
    reports, _ = audit_run(run, ["lira"], reference_models=2, bootstrap=0, device="cpu", progress=False)
    assert [c["method"] for c in calls] == ["bmia-safecompress"] * 2 and all(c["options"] == SC_OPTIONS for c in calls)
    data = load_dataset("digits")
    population = set(sample_digests(MembershipSplit.load(run / "split.json").data(data, "population")))
    for call in calls:  # each reference model: its own members, its attacker's non-members outside them
        sets = call["sets"]
        assert call["train"] == sets["members"] and call["train"] <= population
        assert sets["attack_reference"] <= population - call["train"]
        assert sets["attack_known_members"] <= call["train"]
    assert calls[0]["train"] != calls[1]["train"]
    assert reports["lira"].details["num_models"] == 2
    calls.clear()
    again, _ = audit_run(run, ["lira"], reference_models=2, bootstrap=0, device="cpu", progress=False)
    assert calls == [] and np.array_equal(again["lira"].scores, reports["lira"].scores)  # the store is reused


def test_auditing_a_dp_sgd_run_trains_dp_sgd_references(tmp_path, monkeypatch):
    run = tmp_path / "run"
    compress_run("dp-sgd", "digits", "mlp", out=run, options=DP_OPTIONS, split=SPEC, width=0.5, device="cpu",
                 progress=False)
    calls = spy_reference_training(monkeypatch)
    audit_run(run, ["rmia"], reference_models=2, bootstrap=0, device="cpu", progress=False)
    assert [c["method"] for c in calls] == ["dp-sgd"] * 2
    assert calls[0]["options"].extra["dp"] == {"noise_multiplier": 1.0, "max_grad_norm": 1.0}
