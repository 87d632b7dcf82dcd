import json

import pytest
from typer.testing import CliRunner

from modelsafe.cli import app

runner = CliRunner()


def test_train_digits_offline_writes_run_folder(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--out", str(out),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    for name in ("config.json", "split.json", "metrics.json", "weights.safetensors", "checkpoint/state.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    again = runner.invoke(app, ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "3", "--out",
                                str(out), "--no-progress"])
    assert again.exit_code == 0 and "resumed" in again.output
    clash = runner.invoke(app, ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "4", "--out",
                                str(out), "--no-progress"])
    assert clash.exit_code == 2 and "different config" in clash.output


def test_yaml_config_sets_options(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 1\nbatch-size: 64\nmodel: mlp\ndataset: digits\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["epochs"] == 1 and saved["train"]["batch_size"] == 64
    cfg.write_text("epochz: 1\n")
    assert runner.invoke(app, ["train", "--config", str(cfg)]).exit_code == 2


def test_bad_input_is_one_clear_line(tmp_path):
    res = runner.invoke(app, ["train", "--dataset", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown dataset 'nope'" in res.output and "digits" in res.output
    res = runner.invoke(app, ["train", "--dataset", "digits", "--lr", "-1", "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "lr must be" in res.output


def test_datasets_lists_names():
    res = runner.invoke(app, ["datasets"])
    assert res.exit_code == 0 and "fashion-mnist" in res.output and "digits" in res.output


@pytest.mark.slow  # the whole demo end to end (about 80 s); CI runs it in its slow step
def test_demo_on_digits_writes_a_report(tmp_path):
    out = tmp_path / "demo"
    res = runner.invoke(app, ["demo", "--dataset", "digits", "--epochs", "2", "--images", "20", "--out", str(out),
                              "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    report = (out / "report.md").read_text()
    assert "| rigl |" in report and "| bmia-safecompress |" in report and "bmia_advantage" in report
    assert "loss_advantage" in report and "smi-fgrm" in report and "mi-fgsm" in report
    for name in ("compare/table.md", "compare/tradeoff.png", "transfer.json",
                 "compare/bmia-safecompress/seed0/model.sparse.safetensors"):
        assert (out / name).is_file(), name
    bad = runner.invoke(app, ["demo", "--dataset", "cifar10", "--out", str(tmp_path / "x"), "--no-progress"])
    assert bad.exit_code == 2 and "'fashion-mnist' or 'digits'" in bad.output
