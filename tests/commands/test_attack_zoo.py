"""``modelsafe attack`` with ``timm:<name>`` model specs. Needs the ``vision`` extra (run in .venv-vision:
``.venv-vision/bin/python -m pytest -m vision tests/adversarial/test_command_zoo.py``); the models are randomly
initialised, run at small input sizes on the CPU and never download weights."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modelsafe.cli import app
from modelsafe.data import SplitSpec
from modelsafe.errors import ModelsafeError
from modelsafe.training import TrainConfig
from modelsafe.workflows import train_run
from modelsafe.workflows.attack import check_head

pytestmark = pytest.mark.vision
NIPS_HEADER = ["ImageId", "URL", "x1", "y1", "x2", "y2", "TrueLabel", "TargetClass", "OriginalLandingURL", "License",
               "Author", "AuthorProfileURL"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """timm is importable, and any attempt to fetch weights would fail (and leave files in tmp_path)."""
    pytest.importorskip("timm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield tmp_path
    assert not (tmp_path / "hf").exists() and not (tmp_path / "torch").exists()


def write_nips2017(root: Path, n: int = 4, size: int = 32) -> Path:
    """A NIPS-2017-layout folder: images/<ImageId>.png and images.csv with 1001-class (TF-slim) labels."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    with open(root / "images.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(NIPS_HEADER)
        for i, label in enumerate(rng.integers(1, 1001, n)):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "images" / f"{i:016x}.png")
            writer.writerow([f"{i:016x}", "u", 0, 0, size, size, label, 1 + (label % 1000), "u", "cc", "a", "u"])
    return root


def invoke(*args: str):
    return CliRunner().invoke(app, ["attack", *args, "--attacks", "mi-fgsm,smi-fgrm", "--steps", "2", "--examples",
                                    "2", "--no-pretrained", "--no-progress", "--device", "cpu"])


def test_attack_command_with_timm_models_on_imagenet_compatible(offline):
    root, out = write_nips2017(offline / "nips"), offline / "report"
    res = invoke("--surrogate", "timm:resnet18", "--target", "timm:mobilenetv3_small_050", "--dataset",
                 "imagenet-compatible", "--data-root", str(root), "--image-size", "32", "--out", str(out))
    assert res.exit_code == 0, res.output
    report = json.loads((out / "transfer.json").read_text())
    assert report["dataset"] == "imagenet-compatible" and report["settings"]["n_images"] == 4
    assert report["models"]["timm:mobilenetv3_small_050"] == {"model": "timm:mobilenetv3_small_050",
                                                              "pretrained": False, "input_size": [3, 32, 32]}
    assert {c["target"] for c in report["cells"]} == {"timm:resnet18", "timm:mobilenetv3_small_050"}
    assert {c["surrogate"] for c in report["cells"]} == {"timm:resnet18"}
    assert all(a["mean_linf"] > 0 for a in report["attacks"])  # gradients flow through the adapter
    assert "| timm:resnet18 | smi-fgrm |" in (out / "transfer.md").read_text()
    assert (out / "examples.png").read_bytes()[:4] == b"\x89PNG"


def test_attack_command_mixes_run_folders_and_model_specs(offline):
    spec = SplitSpec(members=400, validation=100, nonmember_source="train", reference=50, eval_nonmembers=50)
    train_run("digits", "cnn", out=offline / "cnn", split=spec, train=TrainConfig(epochs=1), progress=False)
    out = offline / "report"
    res = invoke("--surrogate", str(offline / "cnn"), "--target", "timm:mobilenetv3_small_050", "--image-size",
                 "16", "--images", "6", "--out", str(out))
    assert res.exit_code == 0, res.output
    report = json.loads((out / "transfer.json").read_text())
    assert report["dataset"] == "digits"
    assert report["models"]["cnn"]["model"] == "cnn"
    assert report["models"]["timm:mobilenetv3_small_050"]["input_size"] == [3, 16, 16]
    assert (out / "transfer.md").is_file()


def test_pretrained_head_must_match_the_dataset(offline, blobs):
    from modelsafe.models import create_model

    model = create_model("timm:mobilenetv3_small_050", blobs.info.num_classes, in_channels=1, image_size=16)
    check_head(model, blobs, pretrained=False)  # random weights: the head is built for the dataset
    with pytest.raises(ModelsafeError, match="pretrained on 1000 classes but dataset 'blobs' has 4"):
        check_head(model, blobs, pretrained=True)


def test_imagenet_protocol_script_on_random_init_models(offline):
    """benchmarks/imagenet.py end to end: ResNet-50 surrogate, the seven CNN/ViT targets, true labels, PNGs."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "imagenet.py"
    spec = importlib.util.spec_from_file_location("imagenet_protocol", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    root, out = write_nips2017(offline / "nips", n=2, size=32), offline / "protocol"
    means = script.main(["--data-root", str(root), "--attacks", "mi-fgsm", "bsr", "--images", "2", "--image-size",
                         "32", "--steps", "1", "--no-pretrained", "--device", "cpu", "--no-progress", "--out", str(out)])
    assert set(means) == {"mi-fgsm", "bsr"}
    report = json.loads((out / "transfer.json").read_text())
    assert {c["target"] for c in report["cells"]} == {script.SURROGATE, *script.TARGETS}
    assert report["settings"]["labels"] == "true" and report["settings"]["eps"] == pytest.approx(16 / 255)
    for attack in ("mi-fgsm", "bsr"):
        assert len(list((out / "images" / attack).glob("*/*.png"))) == 2
