import pytest
import torch
from torch import nn

from modelsafe.adversarial import (
    AttackSpec,
    DepthFirstSampling,
    Ensemble,
    InputDiversity,
    Momentum,
    RescaleStep,
    Resized,
    ScaleCopies,
    TransferAttack,
    TranslationSmoothing,
    create_attack,
    describe_attacks,
    gaussian_kernel,
    list_attacks,
    quantize_in_ball,
)
from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.models import create_model

EPS = 0.1
RANDOM = [("vmi-fgsm", {}), ("smi-fgrm", {}), ("sni-fgrm-ct", {"samples": 2}), ("di-mi-fgsm", {"di_prob": 1.0})]


def test_registry_lists_every_issue_preset():
    want = {"fgsm", "i-fgsm", "mi-fgsm", "ni-fgsm", "di-mi-fgsm", "ti-mi-fgsm", "si-ni-fgsm", "vmi-fgsm", "vni-fgsm",
            "fgrm", "smi-fgrm", "sni-fgrm", "mi-fgsm-ct", "ni-fgsm-ct", "smi-fgrm-ct", "sni-fgrm-ct"}
    assert want <= set(list_attacks())
    rows = {r["name"]: r["spec"] for r in describe_attacks()}
    smi = rows["smi-fgrm"]
    assert smi["estimator"] == {"kind": "DepthFirstSampling", "samples": 12, "beta": 1.5, "gamma": 1.0,
                                "walk_start": "lookahead"}
    assert smi["direction"]["kind"] == "RescaleStep" and smi["update"]["mu"] == 1.0
    assert smi["alpha"] == pytest.approx(16 / 255 / 10)
    assert rows["vmi-fgsm"]["estimator"]["samples"] == 20
    ct = rows["smi-fgrm-ct"]
    assert ct["diversity"]["prob"] == 0.5 and ct["smoothing"]["size"] == 7 and ct["scales"]["copies"] == 5
    assert rows["fgsm"]["steps"] == 1 and rows["fgsm"]["alpha"] == pytest.approx(16 / 255)


@pytest.mark.parametrize("name", list_attacks())
def test_every_preset_stays_in_ball_and_range(cnn, images, name):
    attack = create_attack(name, cnn, eps=EPS, steps=None if name == "fgsm" else 2)
    adv = attack(images)
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert torch.isfinite(adv).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - images).abs().max() <= EPS + 1e-6
    assert (adv - images).abs().max() > 0.5 * EPS
    again = create_attack(name, cnn, eps=EPS, steps=None if name == "fgsm" else 2)(images)
    assert torch.equal(adv, again)  # same seed, same output


@pytest.mark.parametrize("name,overrides", RANDOM)
def test_seed_controls_randomness(name, overrides):
    torch.manual_seed(0)
    model = create_model("cnn", 10, 1, 24, width=0.5).eval()  # 24 px: DI has room to move
    x = torch.rand(4, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    a, b, c = (create_attack(name, model, eps=EPS, steps=2, seed=s, **overrides)(x) for s in (1, 2, 2))
    assert not torch.equal(a, b) and torch.equal(b, c)


def test_call_seed_overrides_attack_seed(cnn, images):
    attack = create_attack("smi-fgrm", cnn, eps=EPS, steps=2, seed=0)
    assert torch.equal(attack(images, seed=5), create_attack("smi-fgrm", cnn, eps=EPS, steps=2, seed=5)(images))


def test_quantize_gives_8bit_images_in_ball(cnn):
    x = torch.randint(0, 256, (5, 1, 12, 12), generator=torch.Generator().manual_seed(0)).float() / 255
    adv = create_attack("smi-fgrm", cnn, eps=EPS, steps=3, quantize=True)(x)
    assert torch.allclose(adv * 255, torch.round(adv * 255), atol=1e-4)
    assert (adv - x).abs().max() <= EPS + 1e-6
    off_grid = torch.rand(4, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    q = quantize_in_ball(torch.clamp(off_grid + 0.003, 0, 1), off_grid, 0.002)  # no grid point nearby: keep x0
    assert ((q - off_grid).abs() <= 0.002 + 1e-6).all()


def test_random_start_moves_start_and_stays_in_ball(cnn, images):
    plain = create_attack("mi-fgsm", cnn, eps=EPS, steps=2)(images)
    rand = create_attack("mi-fgsm", cnn, eps=EPS, steps=2, random_start=True)(images)
    assert not torch.equal(plain, rand)
    assert (rand - images).abs().max() <= EPS + 1e-6


@pytest.mark.parametrize("name,overrides", [("fgsm", {}), ("smi-fgrm-ct", {"steps": 2, "samples": 2})])
def test_eps_zero_returns_clean_images(cnn, images, name, overrides):
    assert torch.equal(create_attack(name, cnn, eps=0.0, **overrides)(images), images)


def test_labels_default_to_surrogate_prediction(cnn, images, labels):
    pred = cnn(images).argmax(1)
    attack = create_attack("mi-fgsm", cnn, eps=EPS, steps=3)
    assert torch.equal(attack(images), attack(images, pred))
    forced = create_attack("mi-fgsm", cnn, eps=EPS, steps=3, label_source="model")
    assert torch.equal(forced(images, labels), attack(images))
    with pytest.raises(ModelsafeError, match="needs labels"):
        create_attack("mi-fgsm", cnn, label_source="given")(images)


def test_untargeted_raises_loss_and_targeted_lowers_target_loss(cnn, images):
    y = cnn(images).argmax(1)
    target = (y + 1) % 10
    ce = nn.functional.cross_entropy
    with torch.no_grad():
        adv = create_attack("mi-fgsm", cnn, eps=EPS)(images)
        assert ce(cnn(adv), y) > ce(cnn(images), y)
        tgt = create_attack("smi-fgrm", cnn, eps=EPS, targeted=True)(images, target)
        assert ce(cnn(tgt), target) < ce(cnn(images), target)
    with pytest.raises(ModelsafeError, match="needs labels"):
        create_attack("mi-fgsm", cnn, targeted=True)(images)


def test_train_mode_is_switched_off_and_restored(images):
    torch.manual_seed(0)
    model = create_model("vgg11", 10, 1, 12, width=0.125)
    model.eval()
    in_eval = create_attack("mi-fgsm", model, eps=EPS, steps=2)(images)
    model.train()
    stats = [b.clone() for b in model.buffers()]
    in_train = create_attack("mi-fgsm", model, eps=EPS, steps=2)(images)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers()))  # BN statistics untouched
    assert torch.equal(in_eval, in_train)


@pytest.mark.parametrize("name", ["smi-fgrm", "fgrm", "mi-fgsm", "smi-fgrm-ct"])
@pytest.mark.parametrize("rescale", ["official", "paper"])
def test_zero_gradient_model_gives_no_nan(images, name, rescale):
    flat = nn.Sequential(nn.Flatten(), nn.Linear(144, 10))
    nn.init.zeros_(flat[1].weight)
    overrides = {"rescale": rescale} if "fgrm" in name else {}
    adv = create_attack(name, flat, eps=EPS, steps=2, **overrides)(images)
    assert torch.isfinite(adv).all() and torch.equal(adv, images)


def test_any_channels_sizes_and_dtype():
    torch.manual_seed(0)
    model = create_model("resnet18", 7, 3, 20, width=0.0625).double()
    x = torch.rand(3, 3, 20, 26, dtype=torch.float64)
    adv = create_attack("sni-fgrm-ct", model, eps=EPS, steps=2, samples=2)(x)
    assert adv.dtype == torch.float64 and adv.shape == x.shape
    assert (adv - x).abs().max() <= EPS + 1e-9


def test_ensemble_of_different_resolutions(images):
    torch.manual_seed(0)
    small, large = create_model("cnn", 10, 1, 12), create_model("cnn", 10, 1, 16)
    ens = Ensemble([small, large], input_sizes=[None, 16])
    assert isinstance(ens.members[1], Resized)
    adv = create_attack("smi-fgrm", ens, eps=EPS, steps=2, samples=2)(images)
    assert (adv - images).abs().max() <= EPS + 1e-6
    with pytest.raises(ModelsafeError, match="weights"):
        Ensemble([small, large], weights=[1.0])


def test_composition_by_parts_equals_preset(cnn, images):
    spec = AttackSpec(eps=EPS, steps=3, estimator=DepthFirstSampling(), update=Momentum(1.0),
                      direction=RescaleStep("official"))
    assert torch.equal(TransferAttack(cnn, spec)(images), create_attack("smi-fgrm", cnn, eps=EPS, steps=3)(images))
    ablation = create_attack("smi-fgrm", cnn, eps=EPS, steps=3, step="sign")
    assert ablation.spec.direction.__class__.__name__ == "SignStep"
    di = create_attack("mi-fgsm", cnn, eps=EPS, steps=3, diversity=InputDiversity(prob=1.0))
    assert di.spec.diversity.prob == 1.0


def test_overrides_are_checked(cnn):
    with pytest.raises(UnknownNameError, match="smi-fgrm"):
        create_attack("smi-fgsm", cnn)
    with pytest.raises(ModelsafeError, match="samples.*mi-fgsm"):
        create_attack("mi-fgsm", cnn, samples=5)
    with pytest.raises(ModelsafeError, match="gamma"):
        create_attack("vmi-fgsm", cnn, gamma=2.0)
    with pytest.raises(ModelsafeError, match="unknown option 'sample'"):
        create_attack("smi-fgrm", cnn, sample=5)
    with pytest.raises(ModelsafeError, match="single-step"):
        create_attack("fgsm", cnn, steps=5)
    assert create_attack("smi-fgrm", cnn, samples=3, beta=0.5).spec.estimator.samples == 3


@pytest.mark.parametrize("kwargs,match", [({"eps": -0.1}, "eps"), ({"eps": 2.0}, "eps"), ({"steps": 0}, "steps"),
                                          ({"chunk_size": 0}, "chunk_size"), ({"label_source": "gt"}, "label_source"),
                                          ({"momentum": -1.0}, "momentum"), ({"ti_kernel": 4}, "ti_kernel")])
def test_bad_attack_options(cnn, kwargs, match):
    name = "ti-mi-fgsm" if "ti_kernel" in kwargs else "mi-fgsm"
    with pytest.raises(ModelsafeError, match=match):
        create_attack(name, cnn, **kwargs)


def test_bad_call_inputs(cnn, images, labels):
    attack = create_attack("mi-fgsm", cnn, steps=1)
    with pytest.raises(ModelsafeError, match=r"\[0, 1\]"):
        attack(images * 2)
    with pytest.raises(ModelsafeError, match="4-D"):
        attack(images[0])
    with pytest.raises(ModelsafeError, match="match the batch"):
        attack(images, labels[:3])
    with pytest.raises(ModelsafeError, match=r"\[0, 10\)"):
        attack(images, labels + 10)
    with pytest.raises(ModelsafeError, match="Module"):
        create_attack("mi-fgsm", lambda x: x)


def test_input_diversity_geometry():
    x = torch.rand(2, 1, 20, 20)
    di = InputDiversity(prob=1.0, resize_rate=1.1)
    draws = di.draw(50, 20, 20, torch.Generator().manual_seed(0))
    assert all(d.apply and 20 <= d.height < 22 and d.canvas == (22, 22) for d in draws)
    assert all(0 <= d.top < 22 - d.height for d in draws)
    assert di(x, draws[0]).shape == x.shape
    shrink = InputDiversity(prob=1.0, resize_rate=0.9, mode="bilinear", resize_back=False, pad_value=0.0)
    d = shrink.draw(1, 20, 20, torch.Generator().manual_seed(1))[0]
    out = shrink(torch.ones(1, 1, 20, 20), d)
    assert out.shape == (1, 1, 20, 20) and 18 <= d.height < 20
    assert out.sum() == pytest.approx(d.height * d.width)  # the rest is padding 0
    never = InputDiversity(prob=0.0).draw(20, 20, 20, torch.Generator().manual_seed(0))
    assert not any(d.apply for d in never)
    with pytest.raises(ModelsafeError, match="resize_back"):
        InputDiversity(resize_back=False)


def test_scale_copies_and_translation_kernel():
    assert torch.equal(ScaleCopies().factors(torch.arange(5)), torch.tensor([1, 0.5, 0.25, 0.125, 0.0625],
                                                                            dtype=torch.float64))
    k = gaussian_kernel(7, 3)
    assert k.sum().item() == pytest.approx(1.0)
    grid = torch.arange(-3, 4, dtype=torch.float64)
    assert (k.sum(0) * grid.square()).sum().item() == pytest.approx(1.0, rel=0.05)  # sigma about 1 px
    g = torch.zeros(1, 2, 9, 9)
    g[0, 1, 4, 4] = 1.0
    smoothed = TranslationSmoothing()(g)
    assert smoothed[0, 0].abs().sum() == 0 and smoothed[0, 1].sum().item() == pytest.approx(1.0)
