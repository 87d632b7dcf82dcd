"""``timm:<arch>`` / ``torchvision:<arch>`` adapters. The vision tests need the ``vision`` extra (run them in
.venv-vision: ``.venv-vision/bin/python -m pytest tests/models/test_adapters.py -m vision``); they build randomly
initialised architectures at small resolution on the CPU and never download weights."""

from __future__ import annotations

import contextlib
import importlib.util
import subprocess
import sys

import pytest
import torch

from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import create_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
vision = pytest.mark.vision


def test_importing_modelsafe_does_not_import_timm_or_torchvision():
    code = ("import sys, modelsafe, modelsafe.models, modelsafe.data, modelsafe.models.adapters; "
            "print(sorted(m for m in ('timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_missing_timm_names_the_vision_extra():
    with pytest.raises(ModelsafeError, match=r"modelsafe\[vision\]"):
        create_model("timm:resnet18", 10)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Any attempt to fetch weights would fail (and leave files in tmp_path)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pytest.importorskip("timm")
    pytest.importorskip("torchvision")
    yield tmp_path
    assert not (tmp_path / "hf").exists() and not (tmp_path / "torch").exists()


def net_inputs(model):
    """Record what the wrapped network receives."""
    seen = []
    model.net.register_forward_pre_hook(lambda mod, args: seen.append(args[0].detach().clone()))
    return seen


@vision
def test_timm_resnet18_native_config_and_any_input_size(offline):
    from modelsafe.models.adapters import ExternalModel

    model = create_model("timm:resnet18", 10, image_size=None).eval()
    assert isinstance(model, ExternalModel)
    assert model.input_size == (3, 224, 224) and model.mean == IMAGENET_MEAN and model.std == IMAGENET_STD
    assert model.interpolation == "bicubic"
    seen = net_inputs(model)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 40, 56))
    assert out.shape == (2, 10) and seen[0].shape == (2, 3, 224, 224)


@vision
def test_normalisation_uses_the_models_own_statistics(offline):
    torch.manual_seed(0)
    for name, mean, std in (("timm:resnet18", IMAGENET_MEAN, IMAGENET_STD),
                            ("timm:inception_v3.tf_in1k", (0.5,) * 3, (0.5,) * 3),
                            ("torchvision:resnet18", IMAGENET_MEAN, IMAGENET_STD)):
        model = create_model(name, 5, image_size=80).eval()
        assert model.input_size == (3, 80, 80) and model.mean == mean and model.std == std
        seen = net_inputs(model)
        x = torch.rand(3, 3, 80, 80)
        with torch.no_grad():
            model(x)
        expected = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        torch.testing.assert_close(seen[0], expected)


@vision
@pytest.mark.parametrize("name", ["timm:inception_v3", "timm:inception_v3.tf_adv_in1k",
                                  "timm:inception_resnet_v2.tf_ens_adv_in1k", "timm:adv_inception_v3"])
def test_timm_inception_family_including_adversarially_trained(offline, name):
    from modelsafe.models.adapters import create_external_model

    deprecated = name == "timm:adv_inception_v3"  # timm maps the old name to inception_v3.tf_adv_in1k
    with pytest.warns(UserWarning, match="deprecated") if deprecated else contextlib.nullcontext():
        model = create_external_model(name, 7, image_size=96).eval()
    assert model.input_size == (3, 96, 96) and model.interpolation == "bicubic"
    assert model.mean == (0.5,) * 3 and model.std == (0.5,) * 3
    x = torch.rand(1, 3, 120, 120, requires_grad=True)
    out = model(x)
    assert out.shape == (1, 7)
    out.sum().backward()  # attacks need input gradients through the resize and normalisation
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@vision
def test_native_sizes_of_the_paper_models(offline):
    from timm.models import get_pretrained_cfg

    for tag in ("inception_v3.tf_in1k", "inception_v4.tf_in1k", "inception_resnet_v2.tf_in1k",
                "inception_v3.tf_adv_in1k", "inception_resnet_v2.tf_ens_adv_in1k"):
        cfg = get_pretrained_cfg(tag)
        assert cfg.input_size == (3, 299, 299) and cfg.num_classes == 1000, tag


@vision
def test_torchvision_inception_drops_aux_logits_and_resnet_native_size(offline):
    model = create_model("torchvision:inception_v3", 4, image_size=None)
    assert model.input_size == (3, 299, 299) and model.mean == IMAGENET_MEAN
    model.train()  # in train mode torchvision returns (logits, aux_logits)
    out = model(torch.rand(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)
    assert create_model("torchvision:resnet18", 4, image_size=None).input_size == (3, 224, 224)


@vision
def test_grey_inputs_are_repeated_to_rgb(offline):
    model = create_model("timm:resnet18", 3, in_channels=1, image_size=48).eval()
    seen = net_inputs(model)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 48, 48)).shape == (2, 3)
    assert seen[0].shape == (2, 3, 48, 48)
    torch.testing.assert_close(seen[0][:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0],
                               seen[0][:, 2] * IMAGENET_STD[2] + IMAGENET_MEAN[2])


@vision
def test_adapter_bad_input(offline):
    with pytest.raises(ModelsafeError, match="close matches: resnet18"):
        create_model("timm:resnet18x", 10)
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_model("torchvision:resnet18x", 10)
    with pytest.raises(ModelsafeError, match="needs an architecture"):
        create_model("timm:", 10)
    with pytest.raises(ModelsafeError, match="in_channels=2"):
        create_model("timm:resnet18", 10, in_channels=2)
    with pytest.raises(ModelsafeError, match="num_classes=1000|num_classes"):
        create_model("torchvision:resnet18", 10, pretrained=True)
    model = create_model("timm:resnet18", 10, image_size=32).eval()
    with pytest.raises(ModelsafeError, match=r"takes \(N, 3, H, W\)"):
        model(torch.rand(2, 1, 32, 32))
