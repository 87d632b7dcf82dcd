import json

import pytest
import torch
import typer
from typer.testing import CliRunner

from modelsafe.commands.compress import compress as compress_command
from modelsafe.compress import (
    CompressOptions,
    CompressResult,
    compress,
    get_method,
    list_methods,
    register_method,
)
from modelsafe.compress.methods import METHODS
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import create_model
from modelsafe.training import TrainConfig, evaluate

BASELINES = ["dense", "static", "set", "rigl", "itop", "gmp", "oneshot"]


def small_cnn():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_model("cnn", 4, in_channels=1, image_size=8, width=0.5)


def conv_linear_weights(model):
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def test_registry_lists_the_baselines_and_rejects_unknown_names():
    assert set(BASELINES) <= set(list_methods())
    assert all(get_method(name).description for name in list_methods())
    with pytest.raises(UnknownNameError, match="unknown compression method 'prune'.*rigl"):
        get_method("prune")
    with pytest.raises(ModelsafeError, match="already registered"):
        register_method("rigl", "again")


def test_methods_can_be_added_by_other_modules(blobs):
    @register_method("test-halve", "keeps the larger half of each weight, no training")
    def halve(model, train_data, options, *, seed, device, run_dir, progress):
        for w in conv_linear_weights(model):
            with torch.no_grad():
                w.mul_(w.abs() >= w.abs().median())
        return CompressResult(model, {"density": 0.5})

    @register_method("test-split", "sees the dataset and split", needs_split=True)
    def with_split(model, train_data, options, *, seed, device, run_dir, progress, dataset, split):
        return CompressResult(model, {"dataset": dataset.info.name, "split": split})

    try:
        _, info = compress("test-halve", small_cnn(), blobs.train, progress=False)
        assert info["method"] == "test-halve" and info["flops"]["sparse"] < info["flops"]["dense"]
        assert info["params"]["nonzero"] < info["params"]["total"]
        _, info = compress("test-split", small_cnn(), blobs.train, progress=False, dataset=blobs, split="s")
        assert info["dataset"] == "blobs" and info["split"] == "s"
        with pytest.raises(ModelsafeError, match="needs the dataset and its membership split"):
            compress("test-split", small_cnn(), blobs.train, progress=False)
        # methods without needs_split ignore them
        compress("test-halve", small_cnn(), blobs.train, progress=False, dataset=blobs, split="s")
    finally:
        METHODS.unregister("test-halve")
        METHODS.unregister("test-split")


@pytest.mark.parametrize("method", BASELINES)
def test_each_baseline_trains_to_its_density(blobs, method):
    options = CompressOptions(density=0.2, train=TrainConfig(epochs=6, batch_size=32, lr=0.1), update_interval=4,
                              finetune_epochs=2)
    model, info = compress(method, small_cnn(), blobs.train, options, seed=0, device="cpu", progress=False)
    weights = conv_linear_weights(model)
    total = sum(w.numel() for w in weights)
    nonzero = sum(int((w != 0).sum()) for w in weights)
    assert info["method"] == method and len(info["history"]) == (2 if method == "oneshot" else 6)
    if method == "dense":
        assert nonzero == total
    else:
        assert info["nnz"] == round(0.2 * total) >= nonzero
        assert info["density"] == pytest.approx(0.2, abs=1e-3)
    assert all(not w._backward_hooks for w in weights)  # the engine's hooks are gone
    assert not model.training
    assert evaluate(model, blobs.test)["accuracy"] > 0.4  # four classes: chance is 0.25
    if method in ("set", "rigl", "itop"):
        assert info["updates"] > 0 and info["itop_rate"] > 0.1
    if method == "itop":
        assert info["updates"] > compress("rigl", small_cnn(), blobs.train, options, progress=False).info["updates"]


def test_bad_options_are_rejected(blobs):
    with pytest.raises(ModelsafeError, match="density"):
        compress("rigl", small_cnn(), blobs.train, CompressOptions(density=0.0))
    with pytest.raises(UnknownNameError, match="distribution"):
        compress("rigl", small_cnn(), blobs.train, CompressOptions(distribution="normal"))


def test_cli_compress_writes_a_packed_file_and_prints_the_sizes(tmp_path):
    app = typer.Typer()
    app.command()(compress_command)
    app.command("noop")(lambda: None)  # a second command makes `compress` a sub-command, as in the real app
    out = tmp_path / "run"
    args = ["compress", "--method", "static", "--dataset", "digits", "--model", "mlp", "--density", "0.05",
            "--epochs", "2", "--out", str(out), "--no-progress", "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "dense bytes" in res.output and "sparse bytes" in res.output and "ratio" in res.output
    for name in ("config.json", "split.json", "metrics.json", "weights.safetensors", "weights.sparse.safetensors"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["export"]["ratio"] > 5 and metrics["export"]["sparse_bytes"] == (
        out / "weights.sparse.safetensors").stat().st_size
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "(resumed)" in again.output
    bad = CliRunner().invoke(app, ["compress", "--method", "prune", "--dataset", "digits", "--out",
                                   str(tmp_path / "x")])
    assert isinstance(bad.exception, UnknownNameError)
