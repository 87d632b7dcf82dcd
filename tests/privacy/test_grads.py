"""Per-sample gradients from torch.func equal a per-sample autograd loop."""

import pytest
import torch

from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model
from modelsafe.privacy import last_weight_names, per_sample_grads, per_sample_grads_loop


def seeded(build, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


@pytest.mark.parametrize("name, layers", [("cnn", 1), ("cnn", 3), ("vgg11", 2)])
def test_vmap_matches_loop_on_image_models(name, layers):
    model = seeded(lambda: create_model(name, 10, in_channels=1, image_size=28, width=0.25))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(12, 1, 28, 28, generator=gen), torch.randint(0, 10, (12,), generator=gen)
    names = last_weight_names(model, layers)
    grads, loss, logits = per_sample_grads(model, x, y, names)
    reference = per_sample_grads_loop(model, x, y, names)
    for n in names:
        assert grads[n].shape == (12, *dict(model.named_parameters())[n].shape)
        torch.testing.assert_close(grads[n], reference[n], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(model(x), y, reduction="none"))


def test_vmap_matches_loop_on_text_and_tabular_models():
    text = seeded(lambda: create_model("text", 3, vocab_size=40, width=0.5))
    tokens = torch.randint(1, 40, (6, 9), generator=torch.Generator().manual_seed(2))
    tokens[:, 6:] = 0  # padding
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    names = last_weight_names(text, 3)  # includes the embedding table
    grads, _, _ = per_sample_grads(text, tokens, y, names)
    reference = per_sample_grads_loop(text, tokens, y, names)
    for n in names:
        torch.testing.assert_close(grads[n], reference[n], atol=1e-5, rtol=1e-5)
    mlp = seeded(lambda: create_model("mlp", 4, in_channels=7, image_size=None))
    x, y = torch.randn(5, 7), torch.tensor([0, 1, 2, 3, 0])
    grads, _, _ = per_sample_grads(mlp, x, y, last_weight_names(mlp))
    reference = per_sample_grads_loop(mlp, x, y, last_weight_names(mlp))
    torch.testing.assert_close(grads["classifier.5.weight"], reference["classifier.5.weight"], atol=1e-5, rtol=1e-5)


def test_last_weight_names_skips_norm_layers_and_checks_count():
    vgg = create_model("vgg11", 10, in_channels=1, image_size=28, width=0.25)
    assert last_weight_names(vgg, 2) == ["classifier.2.weight", "features.25.weight"]  # not BatchNorm weights
    with pytest.raises(ModelsafeError, match="last 99 weight layers"):
        last_weight_names(vgg, 99)


class ScaledLogits(torch.nn.Module):
    """The output layer's output is changed after the layer (temperature): the closed form must not apply."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(6, 5)
        self.head = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.relu(self.body(x))) / 2.0


class SharedHead(torch.nn.Module):
    """The output layer is called twice (weight sharing): the closed form must not apply."""

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.head(x)))


def test_closed_form_for_the_output_layer_and_vmap_elsewhere(monkeypatch):
    from modelsafe.privacy import grads as grads_module

    real_vmap = grads_module.vmap
    calls = []

    def counting_vmap(*args, **kwargs):
        calls.append(1)
        return real_vmap(*args, **kwargs)

    monkeypatch.setattr(grads_module, "vmap", counting_vmap)
    cnn = seeded(lambda: create_model("cnn", 10, in_channels=1, image_size=28, width=0.25))
    gen = torch.Generator().manual_seed(3)
    x, y = torch.rand(7, 1, 28, 28, generator=gen), torch.randint(0, 10, (7,), generator=gen)
    names = last_weight_names(cnn)
    grads, _, _ = per_sample_grads(cnn, x, y, names)
    assert not calls  # the output layer's weight: closed form, no vmap
    torch.testing.assert_close(grads[names[0]], per_sample_grads_loop(cnn, x, y, names)[names[0]],
                               atol=1e-5, rtol=1e-5)
    forced, _, _ = per_sample_grads(cnn, x, y, names, method="vmap")
    assert len(calls) == 1
    torch.testing.assert_close(forced[names[0]], grads[names[0]], atol=1e-5, rtol=1e-5)
    with pytest.raises(ModelsafeError, match="unknown per-sample gradient method 'loop'"):
        per_sample_grads(cnn, x, y, names, method="loop")
    for build, inputs in ((ScaledLogits, torch.randn(4, 6)), (SharedHead, torch.randn(4, 3))):
        model = seeded(build)
        labels = torch.tensor([0, 1, 2, 1])
        names = last_weight_names(model)
        before = len(calls)
        grads, _, logits = per_sample_grads(model, inputs, labels, names)
        assert len(calls) == before + 1, build.__name__  # fell back to vmap
        torch.testing.assert_close(grads[names[0]], per_sample_grads_loop(model, inputs, labels, names)[names[0]],
                                   atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(inputs))
