import pytest
import torch

from modelsafe.data.info import DatasetInfo
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import create_model, create_model_for, list_models


@pytest.mark.parametrize("name", ["cnn", "mlp", "vgg11", "vgg16", "vgg-c", "resnet18"])
@pytest.mark.parametrize("channels, size", [(1, 28), (3, 32)])
def test_image_models_shapes(name, channels, size):
    model = create_model(name, 7, in_channels=channels, image_size=size, width=0.25).eval()
    out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_cnn_matches_reference_parameter_count():
    model = create_model("cnn", 10, in_channels=1, image_size=28)
    assert sum(p.numel() for p in model.parameters()) == 421_642


def test_vgg_c_matches_the_safecompress_code_sizes():
    from modelsafe.sparse.layers import select_layers

    model = create_model("vgg-c", 100, in_channels=3, image_size=32)
    layers = select_layers(model)
    assert sum(layer.numel for layer in layers) == 11_353_792  # the maskable weights of the official VGG-C
    assert sum(p.numel() for p in model.parameters()) == 11_369_636
    names = [layer.name.rsplit(".", 1)[0] for layer in layers]
    assert names[:3] == ["features.0", "features.3", "features.7"] and names[-3:] == [
        "classifier.0", "classifier.3", "classifier.6"]
    assert model.features[20].kernel_size == (1, 1) and model.classifier[0].in_features == 2048


def test_vgg_c_refuses_inputs_too_small():
    with pytest.raises(ModelsafeError, match="vgg-c"):
        create_model("vgg-c", 10, in_channels=3, image_size=2)


def test_normalisation_is_inside_the_model():
    model = create_model("mlp", 3, in_channels=1, image_size=4, mean=[0.2], std=[0.5])
    x = torch.rand(2, 1, 4, 4)
    assert torch.allclose(model.normalize(x), (x - 0.2) / 0.5)


def test_width_multiplier_scales_channels():
    small = create_model("vgg11", 10, in_channels=3, image_size=32, width=0.25)
    big = create_model("vgg11", 10, in_channels=3, image_size=32, width=0.5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in big.parameters()) / 3


def test_tabular_and_text_models():
    tab = create_model_for("mlp", DatasetInfo("t", "tabular", 5, (12,)))
    assert tab(torch.rand(3, 12)).shape == (3, 5)
    text = create_model_for("text", DatasetInfo("x", "text", 2, (6,), vocab_size=30))
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0], [7, 0, 0, 0, 0, 0]])
    assert text(tokens).shape == (2, 2)
    # padding does not change the pooled representation
    assert torch.allclose(text(tokens[:, :3]), text(tokens), atol=1e-6)


def test_bad_model_requests():
    with pytest.raises(UnknownNameError, match="resnet18"):
        create_model("resnet19", 10)
    with pytest.raises(ModelsafeError, match="num_classes"):
        create_model("cnn", 0)
    with pytest.raises(ModelsafeError, match="vocab_size"):
        create_model("text", 2)
    with pytest.raises(ModelsafeError, match="tabular"):
        create_model_for("cnn", DatasetInfo("t", "tabular", 5, (12,)))
    with pytest.raises(ModelsafeError, match="width"):
        create_model("cnn", 10, width=0)


def test_list_models():
    assert {"cnn", "mlp", "vgg11", "vgg16", "resnet18", "text"} <= set(list_models())


def test_importing_modelsafe_does_not_import_vision_libraries():
    import subprocess
    import sys

    code = ("import sys, modelsafe, modelsafe.models, modelsafe.data, modelsafe.training, modelsafe.cli; "
            "print(any(m.split('.')[0] in ('timm', 'torchvision') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
