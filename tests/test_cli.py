import json

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
