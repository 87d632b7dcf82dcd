import math

import pytest

from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.sparse import exact_counts, layer_densities
from modelsafe.sparse.distribution import target_count

TINY = {"conv1": (4, 1, 3, 3), "conv2": (8, 4, 3, 3), "fc": (10, 32)}  # 36 + 288 + 320 = 644 weights


def test_erk_matches_hand_computation_without_overflow():
    # r_l * N_l = sum(shape_l): 11, 18, 42. eps = 0.2 * 644 / 71.
    eps = 0.2 * 644 / (11 + 18 + 42)
    got = layer_densities(TINY, 0.2, "erk")
    assert got["conv1"] == pytest.approx(eps * 11 / 36, rel=1e-12)
    assert got["conv2"] == pytest.approx(eps * 18 / 288, rel=1e-12)
    assert got["fc"] == pytest.approx(eps * 42 / 320, rel=1e-12)


def test_erk_overflow_makes_the_densest_layer_dense_and_resolves():
    # At 0.5, conv1 would get 4.535 * 11/36 = 1.39 > 1: it becomes dense, eps = (322 - 36) / (18 + 42).
    eps = (0.5 * 644 - 36) / (18 + 42)
    got = layer_densities(TINY, 0.5, "erk")
    assert got["conv1"] == 1.0
    assert got["conv2"] == pytest.approx(eps * 18 / 288, rel=1e-12)
    assert got["fc"] == pytest.approx(eps * 42 / 320, rel=1e-12)
    counts = exact_counts(got, {n: math.prod(s) for n, s in TINY.items()}, target_count(0.5, 644))
    # ideal counts 36, 85.8, 200.2 -> largest remainder gives the extra weight to conv2
    assert counts == {"conv1": 36, "conv2": 86, "fc": 200}


# ERK densities of the official SafeCompress VGG-C (CIFAR-100) measured from the official code.
VGG_C = {"f0": (64, 3, 3, 3), "f3": (64, 64, 3, 3), "f7": (128, 64, 3, 3), "f10": (128, 128, 3, 3),
         "f14": (256, 128, 3, 3), "f17": (256, 256, 3, 3), "f20": (256, 256, 1, 1), "f24": (512, 256, 3, 3),
         "f27": (512, 512, 3, 3), "f30": (512, 512, 1, 1), "f34": (512, 512, 3, 3), "f37": (512, 512, 3, 3),
         "f40": (512, 512, 1, 1), "c0": (512, 2048), "c3": (512, 512), "c6": (100, 512)}
OFFICIAL = {
    0.05: [1.0, .1696, .1253, .0829, .0617, .0410, .3660, .0306, .0204, .1826, .0204, .0204, .1826, .1139, .1823,
           .5578],
    0.10: [1.0, .3417, .2524, .1670, .1243, .0825, .7372, .0617, .0410, .3679, .0410, .0410, .3679, .2295, .3672,
           1.0],
    0.20: [1.0, .7111, .5254, .3476, .2587, .1718, 1.0, .1284, .0854, .7657, .0854, .0854, .7657, .4776, .7642,
           1.0],
}


@pytest.mark.parametrize("density", sorted(OFFICIAL))
def test_erk_matches_the_official_code_on_vgg_c(density):
    assert sum(math.prod(s) for s in VGG_C.values()) == 11_353_792
    got = layer_densities(VGG_C, density, "erk")
    assert [round(got[n], 4) for n in VGG_C] == OFFICIAL[density]
    total = sum(got[n] * math.prod(s) for n, s in VGG_C.items())
    assert total == pytest.approx(density * 11_353_792, rel=1e-9)


def test_er_uses_channel_dimensions_only_and_uniform_is_flat():
    er = layer_densities(TINY, 0.2, "er")
    raw = {"conv1": (1 + 4) / 4, "conv2": (4 + 8) / 32, "fc": (32 + 10) / 320}
    eps = 0.2 * 644 / sum(raw[n] * math.prod(s) for n, s in TINY.items())
    assert all(er[n] == pytest.approx(min(1.0, eps * raw[n])) for n in TINY)
    assert layer_densities(TINY, 0.3, "uniform") == {n: 0.3 for n in TINY}


def test_erk_power_zero_point_five_flattens_the_distribution():
    steep, flat = layer_densities(TINY, 0.2, "erk"), layer_densities(TINY, 0.2, "erk", power=0.5)
    assert flat["fc"] / flat["conv1"] > steep["fc"] / steep["conv1"]


@pytest.mark.parametrize("method", ["erk", "er", "uniform"])
@pytest.mark.parametrize("density", [0.01, 0.05, 0.1, 0.37, 0.9, 1.0])
def test_exact_counts_sum_to_the_global_target(method, density):
    numels = {n: math.prod(s) for n, s in VGG_C.items()}
    total = sum(numels.values())
    counts = exact_counts(layer_densities(VGG_C, density, method), numels, target_count(density, total))
    assert sum(counts.values()) == round(density * total)
    assert all(1 <= counts[n] <= numels[n] for n in numels)


def test_every_layer_keeps_at_least_one_weight():
    counts = exact_counts(layer_densities(TINY, 0.005, "uniform"), {n: math.prod(s) for n, s in TINY.items()}, 3)
    assert counts == {"conv1": 1, "conv2": 1, "fc": 1}
    with pytest.raises(ModelsafeError, match="at least one weight per layer"):
        exact_counts({"a": 0.001, "b": 0.001}, {"a": 10, "b": 10}, 1)


@pytest.mark.parametrize("density", [0, -0.1, 1.5, float("nan"), float("inf")])
def test_density_outside_zero_one_is_rejected(density):
    with pytest.raises(ModelsafeError, match=r"density must lie in \(0, 1\]"):
        layer_densities(TINY, density)


def test_unknown_distribution_is_rejected():
    with pytest.raises(ModelsafeError, match="distribution"):
        layer_densities(TINY, 0.1, "gaussian")
    assert issubclass(UnknownNameError, ModelsafeError)
