import math

import pytest
import torch

from modelsafe.adversarial import RescaleStep, SignStep, rescale_official, rescale_paper
from modelsafe.errors import ModelsafeError


def sigmoid(z):
    return 1 / (1 + math.exp(-z))


def test_paper_form_matches_hand_computation():
    g = torch.tensor([1.0, -2.0, 4.0, 0.5]).view(1, 1, 2, 2)
    # log2|g| = 0, 1, 2, -1: mean 0.5, unbiased std sqrt(5/3)
    std = math.sqrt(5 / 3)
    expected = [2 * sigmoid((l - 0.5) / std) * s for l, s in zip([0, 1, 2, -1], [1, -1, 1, 1])]
    assert torch.allclose(rescale_paper(g).flatten(), torch.tensor(expected), atol=1e-6)
    assert rescale_paper(g, scale=3.0).flatten()[2] == pytest.approx(3 * sigmoid(1.5 / std), abs=1e-6)


def test_official_form_matches_hand_computation():
    g = torch.tensor([1.0, -2.0, 4.0, 0.5]).view(1, 1, 2, 2)
    # a = -log2|g| = 0, -1, -2, 1; a_max = 1; k = ceil(a_max - a + 1e-9) = 2, 3, 4, 1; w = 2 ln(1 + k)
    expected = [2 * math.log(3), -2 * math.log(4), 2 * math.log(5), 2 * math.log(2)]
    assert torch.allclose(rescale_official(g).flatten(), torch.tensor(expected), atol=1e-6)


def test_official_form_reduces_per_channel_and_paper_per_image():
    g = torch.tensor([[1.0, 0.5], [0.25, 0.125]]).expand(1, 2, 2, 2).clone()
    g[0, 1] *= 8  # second channel: same pattern, 8x larger
    off = rescale_official(g)
    # per channel: relative octaves are identical, but a_max differs (3 vs 0 -> floored at 1)
    assert torch.allclose(off[0, 0].flatten(), 2 * torch.log1p(torch.tensor([4.0, 3, 2, 1]) / 3))
    assert torch.allclose(off[0, 1].flatten(), 2 * torch.log1p(torch.tensor([4.0, 3, 2, 1]) / 1))
    pap = rescale_paper(g)
    assert not torch.allclose(pap[0, 0], pap[0, 1])  # one image-wide standardisation


@pytest.mark.parametrize("fn", [rescale_official, rescale_paper])
def test_rescale_is_nan_free_on_zeros_and_keeps_signs(fn):
    g = torch.randn(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    g[0, 0, 0, 0] = 0.0       # one exact zero
    g[1] = 0.0                # an all-zero image
    g[2, 1] = 0.7             # constant magnitude channel (std 0 / a_max 0 cases)
    out = fn(g)
    assert torch.isfinite(out).all()
    assert torch.equal(torch.sign(out), torch.sign(g))
    assert out[0, 0, 0, 0] == 0 and (out[1] == 0).all()
    assert out.dtype == g.dtype and out.shape == g.shape


def test_paper_form_is_sign_when_no_spread_and_official_floor():
    g = torch.full((1, 1, 3, 3), -1.0)
    assert torch.equal(rescale_paper(g), torch.sign(g))
    assert torch.allclose(rescale_official(g), torch.full_like(g, -2 * math.log(2)))


def test_paper_mean_magnitude_near_one_official_larger():
    g = torch.distributions.Laplace(0.0, 1.0).sample((4, 3, 32, 32))
    g = g / g.abs().mean((1, 2, 3), keepdim=True)
    assert rescale_paper(g).abs().mean() == pytest.approx(1.0, abs=0.05)
    assert 1.2 < rescale_official(g).abs().mean() < 1.5  # the official rescaling averages about 1.37


def test_step_objects():
    g = torch.tensor([[[[0.5, -3.0]]]])
    assert torch.equal(SignStep()(g), torch.tensor([[[[1.0, -1.0]]]]))
    assert torch.equal(RescaleStep("paper")(g), rescale_paper(g))
    assert torch.equal(RescaleStep()(g), rescale_official(g))
    with pytest.raises(ModelsafeError, match="rescale"):
        RescaleStep("tf")
