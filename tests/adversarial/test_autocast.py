"""bfloat16 autocast of the gradient evaluations (``autocast=True``): on, yet within a tolerance of full
precision on a trained model, and never around the step direction (the rescale's log2 binning)."""

import pytest
import torch
import torch.nn.functional as F

from modelsafe.adversarial import create_attack
from modelsafe.data import load_dataset
from modelsafe.training import fit
from modelsafe.workflows import init_model


@pytest.fixture(scope="module")
def trained():
    data = load_dataset("digits")
    model = init_model("cnn", data, 1.0, 0)
    fit(model, data.train, epochs=3, lr=0.05, seed=0, progress=False, device="cpu")
    x, y = data.test.features(torch.arange(200)), data.test.y[:200]
    return model.eval(), x, y


@pytest.mark.parametrize("name", ["mi-fgsm", pytest.param("smi-fgrm", marks=pytest.mark.slow)])  # bf16 on CPU: slow
def test_autocast_is_on_and_fools_the_model_as_often_as_full_precision(trained, name):
    model, x, y = trained
    full = create_attack(name, model, eps=0.1)(x, y, seed=0)
    half = create_attack(name, model, eps=0.1, autocast=True)(x, y, seed=0)
    assert half.dtype == x.dtype and not torch.equal(full, half)  # the bf16 gradients changed some steps
    assert (half - x).abs().max() <= 0.1 + 1e-6 and half.min() >= 0 and half.max() <= 1
    with torch.no_grad():
        fooled = [float((model(a).argmax(1) != y).float().mean()) for a in (full, half)]
    assert fooled[0] > 0.3  # the attack works at this eps, so the comparison means something
    assert abs(fooled[0] - fooled[1]) <= 0.05, fooled


def test_one_gradient_under_autocast_points_where_the_full_precision_one_does(trained):
    model, x, y = trained
    grads = []
    for autocast in (False, True):
        attack = create_attack("fgsm", model, eps=0.1, autocast=autocast)
        seen = []  # the step direction's input and whether autocast was on when it ran
        original = type(attack.spec.direction).__call__

        def spy(self, g, seen=seen, original=original):
            seen.append((g.clone(), torch.is_autocast_enabled("cpu")))
            return original(self, g)

        type(attack.spec.direction).__call__ = spy
        try:
            attack(x, y, seed=0)
        finally:
            type(attack.spec.direction).__call__ = original
        (g, autocast_on), = seen
        assert not autocast_on  # the step direction is computed in full precision
        grads.append(g)
    cosine = F.cosine_similarity(grads[0].flatten(1), grads[1].flatten(1), dim=1)
    assert not torch.equal(grads[0], grads[1]) and cosine.min() > 0.95, cosine.min()


def test_the_cli_records_autocast(tmp_path):
    import json

    from typer.testing import CliRunner

    from modelsafe.cli import app

    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "--dataset", "digits", "--model", "cnn", "--epochs", "1", "--device", "cpu",
                                   "--no-progress", "--out", str(run)])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["attack", "--surrogate", str(run), "--attacks", "mi-fgsm", "--images", "20",
                                   "--autocast", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "transfer.json").read_text())["settings"]["autocast"] is True
    assert "bfloat16 autocast" in (tmp_path / "a" / "transfer.md").read_text()
