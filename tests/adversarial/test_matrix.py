import json

import pytest
import torch

from modelsafe.adversarial import Ensemble, create_attack, transfer_matrix
from modelsafe.data import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model
from modelsafe.report import example_grid, transfer_table
from modelsafe.utils import derive_seed


@pytest.fixture(scope="module")
def zoo():
    torch.manual_seed(0)
    return {"cnn": create_model("cnn", 10, 1, 12).eval(), "mlp": create_model("mlp", 10, 1, 12).eval(),
            "cnn-b": create_model("cnn", 10, 1, 12, width=0.5).eval()}


@pytest.fixture(scope="module")
def data(zoo):
    x = torch.randint(0, 256, (30, 1, 12, 12), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    with torch.no_grad():
        y = zoo["cnn"](x.float() / 255).argmax(1)  # the surrogate is right on every image
    y[:5] = (y[:5] + 1) % 10                         # ... except five
    return TensorData(x, y)


def test_matrix_counts_match_direct_evaluation(zoo, data):
    result = transfer_matrix(["fgsm", "mi-fgsm"], {"cnn": zoo["cnn"]}, zoo, data, eps=0.1, steps=3, batch_size=8,
                             labels="true", progress=False, examples=4)
    assert {(c["attack"], c["target"]) for c in result.cells} == {(a, t) for a in ("fgsm", "mi-fgsm") for t in zoo}
    x, rates = data.features(), {}
    for a in ("fgsm", "mi-fgsm"):
        attack = create_attack(a, zoo["cnn"], eps=0.1, steps=None if a == "fgsm" else 3, quantize=True)
        adv = torch.cat([attack(x[i:i + 8], data.y[i:i + 8], seed=derive_seed(0, a, "cnn", i // 8))
                         for i in range(0, 30, 8)])
        for t, model in zoo.items():
            with torch.no_grad():
                pred, clean = model(adv).argmax(1), model(x).argmax(1)
            cell = next(c for c in result.cells if c["attack"] == a and c["target"] == t)
            assert cell["success"] == pytest.approx((pred != data.y).float().mean().item())
            ok = clean == data.y
            assert cell["n_correct"] == int(ok.sum())
            if ok.any():
                assert cell["success_on_correct"] == pytest.approx((pred[ok] != data.y[ok]).float().mean().item())
            assert cell["white_box"] == (t == "cnn")
        row = next(r for r in result.attacks if r["attack"] == a)
        assert row["mean_linf"] == pytest.approx((adv - x).flatten(1).abs().amax(1).mean().item(), abs=1e-6)
        assert row["mean_l2"] == pytest.approx((adv - x).flatten(1).norm(dim=1).mean().item(), rel=1e-5)
        assert row["black_box_mean"] == pytest.approx(
            sum(c["success"] for c in result.cells if c["attack"] == a and not c["white_box"]) / 2)
        per_image = torch.zeros(30, dtype=torch.float64)  # the interval is over images of this per-image rate
        for t in ("mlp", "cnn-b"):
            with torch.no_grad():
                per_image += (zoo[t](adv).argmax(1) != data.y).double() / 2
        gen = torch.Generator().manual_seed(0)
        means = per_image[torch.randint(0, 30, (1000, 30), generator=gen)].mean(1)
        expected = [torch.quantile(means, 0.025).item(), torch.quantile(means, 0.975).item()]
        assert row["black_box_ci"] == pytest.approx(expected)
        assert row["black_box_ci"][0] <= row["black_box_mean"] <= row["black_box_ci"][1]
        torch.testing.assert_close(result.black_box_hits[(a, "cnn")], per_image)
        rates[a] = per_image
    # the paired difference: mean and interval of the per-image difference, same resampled images
    diff = rates["mi-fgsm"] - rates["fgsm"]
    paired = result.paired_difference("mi-fgsm", "fgsm", "cnn")
    gen = torch.Generator().manual_seed(0)
    means = diff[torch.randint(0, 30, (1000, 30), generator=gen)].mean(1)
    assert paired["mean"] == pytest.approx(diff.mean().item()) and paired["n"] == 30
    assert paired["ci"] == pytest.approx([torch.quantile(means, 0.025).item(), torch.quantile(means, 0.975).item()])
    with pytest.raises(ModelsafeError, match="no black-box results for 'pgn' on 'cnn'"):
        result.paired_difference("pgn", "fgsm", "cnn")
    assert result.clean_accuracy["cnn"] == pytest.approx(25 / 30)
    assert result.examples[("mi-fgsm", "cnn")][1].shape == (4, 1, 12, 12)
    table = transfer_table(result)
    assert "| cnn | mi-fgsm |" in table and "*" in table
    assert "| cnn | fgsm |" in transfer_table(result, "correct")
    json.dumps(result.to_dict())


def test_matrix_with_ensemble_targeted_and_factories(zoo, data):
    ens = Ensemble([zoo["cnn"], zoo["mlp"]], memory_saving=True)
    result = transfer_matrix({"smi": lambda m: create_attack("smi-fgrm", m, eps=0.1, steps=2, samples=2,
                                                             targeted=True)},
                             {"ens": ens}, zoo, (data.features(), data.y), batch_size=16, progress=False,
                             target_classes=lambda y: (y + 1) % 10)
    wb = {c["target"]: c["white_box"] for c in result.cells}
    assert wb == {"cnn": True, "mlp": True, "cnn-b": False}
    assert result.settings["targeted"] is True
    assert 0 <= result.black_box_mean("smi") <= 1


def test_matrix_bad_input(zoo, data):
    with pytest.raises(ModelsafeError, match="surrogate"):
        transfer_matrix(["mi-fgsm"], {}, zoo, data, progress=False)
    with pytest.raises(ModelsafeError, match="labels"):
        transfer_matrix(["mi-fgsm"], {"cnn": zoo["cnn"]}, zoo, data, labels="gt", progress=False)
    with pytest.raises(ModelsafeError, match=r"\[0, 1\]"):
        transfer_matrix(["mi-fgsm"], {"cnn": zoo["cnn"]}, zoo, (data.x.float(), data.y), progress=False)


def test_example_grid_writes_png(tmp_path, data):
    x = data.features()[:3]
    path = example_grid(x, [x.clamp(0.1, 0.9)], ["clamp"], tmp_path / "grid.png", eps=0.1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ModelsafeError):
        example_grid(x, [x[:2]], ["bad"], tmp_path / "bad.png")
