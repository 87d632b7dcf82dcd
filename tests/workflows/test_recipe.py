"""Reference models are trained with the target's recipe: a run folder's config gives it, and the audit of a
sparse target trains sparse reference models."""

import pytest
import torch

from modelsafe.compress import CompressOptions
from modelsafe.data import SplitSpec, load_dataset
from modelsafe.errors import ModelsafeError
from modelsafe.storage.io import load_weights
from modelsafe.training import TrainConfig
from modelsafe.workflows import Recipe, audit_run, compress_run, init_model
from modelsafe.workflows.recipe import MethodTrainer

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
    with pytest.raises(ModelsafeError, match="need their own membership splits"):
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
