import json

import pytest
import typer
from typer.testing import CliRunner

from modelsafe.cli import app as cli
from modelsafe.commands.attack import attack, parse_eps
from modelsafe.data import SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.training import TrainConfig
from modelsafe.workflows import train_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    spec = SplitSpec(members=400, validation=100, nonmember_source="train", reference=50, eval_nonmembers=50)
    for model in ("cnn", "mlp"):
        train_run("digits", model, out=root / model, split=spec, train=TrainConfig(epochs=2), progress=False)
    return root


def test_attack_command_writes_reports(runs, tmp_path):
    app = typer.Typer()
    app.command()(attack)
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["--surrogate", str(runs / "cnn"), "--target", str(runs / "mlp"),
                                      "--attacks", "mi-fgsm,smi-fgrm", "--eps", "32/255", "--steps", "2",
                                      "--images", "20", "--batch-size", "10", "--examples", "4", "--out", str(out),
                                      "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "transfer.json").read_text())
    assert report["settings"]["n_images"] == 20 and report["dataset"] == "digits"
    assert {c["target"] for c in report["cells"]} == {"cnn", "mlp"}
    assert (out / "transfer.csv").read_text().count("\n") == 1 + 2 * 2
    assert "white-box" in (out / "transfer.md").read_text()
    assert (out / "examples.png").read_bytes()[:4] == b"\x89PNG"
    assert "| cnn | smi-fgrm |" in result.output


def test_attack_command_model_spec_errors(runs, tmp_path):
    """Bad model specs and missing or clashing datasets fail before any model is built (timm is not needed)."""
    def run(*args: str):
        res = CliRunner().invoke(cli, ["attack", *args, "--out", str(tmp_path / "x"), "--no-progress",
                                       "--device", "cpu"])
        assert res.exit_code == 2, res.output
        return res.output

    assert "'timn:' is no model prefix" in run("--surrogate", "timn:resnet18", "--dataset", "imagenet-compatible")
    assert "give the data to attack: --dataset" in run("--surrogate", "timm:resnet18", "-t", "torchvision:vgg11")
    assert "uses dataset 'digits', but --dataset says 'imagenet-compatible'" in run(
        "--surrogate", "timm:resnet18", "--target", str(runs / "cnn"), "--dataset", "imagenet-compatible")
    assert "model specs only" in run("--surrogate", str(runs / "cnn"), "--pretrained")
    assert "--image-size must be a positive integer" in run("-s", "timm:resnet18", "--dataset", "digits",
                                                            "--image-size", "0")
    assert "--dataset-option cannot be combined with run folders" in run(
        "--surrogate", str(runs / "cnn"), "--target", "timm:resnet18", "--dataset-option", "image_size=8")
    assert not (tmp_path / "x").exists()


def test_parse_eps():
    assert parse_eps("16/255") == pytest.approx(16 / 255)
    assert parse_eps("0.1") == pytest.approx(0.1)
    for bad in ("abc", "2", "-1/255", "1/0"):
        with pytest.raises(ModelsafeError, match="eps"):
            parse_eps(bad)


def test_saved_pngs_reproduce_the_reported_success(runs, tmp_path):
    """The protocol of TransferAttack and S-FGRM judges the saved 8-bit images: read back, they must give the
    success rates the report states."""
    import numpy as np
    import torch

    from modelsafe.data import load_dataset
    from modelsafe.data.images import read_rgb
    from modelsafe.workflows import load_target

    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["attack", "--surrogate", str(runs / "cnn"), "--target", str(runs / "mlp"),
                                      "--attacks", "mi-fgsm", "--eps", "32/255", "--steps", "2", "--images", "20",
                                      "--batch-size", "8", "--save-images", "--out", str(out), "--no-progress",
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    files = sorted((out / "images" / "mi-fgsm").glob("*/*.png"))
    assert len(files) == 20 and files[0].name == "000000.png"
    data = load_dataset("digits")
    clean = data.test.features(torch.arange(20))
    adv = torch.from_numpy(np.stack([read_rgb(f)[:1] for f in files])).double() / 255
    assert (adv - clean.double()).abs().max() <= 32 / 255 + 1e-9
    report = json.loads((out / "transfer.json").read_text())
    for target in ("cnn", "mlp"):
        model = load_target(runs / target, device="cpu")[0]
        with torch.no_grad():
            wrong = (model(adv.float()).argmax(1) != data.test.y[:20]).float().mean().item()
        cell = next(c for c in report["cells"] if c["target"] == target)
        assert cell["success"] == pytest.approx(wrong)
