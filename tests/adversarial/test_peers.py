"""Same adversarial images as torchattacks on the same float64 model and inputs (max abs diff <= 1e-6)."""

import numpy as np
import pytest
import torch

from modelsafe.adversarial import create_attack
from modelsafe.models import create_model

torchattacks = pytest.importorskip("torchattacks")
pytestmark = pytest.mark.compare

EPS, STEPS = 8 / 255, 10
ALPHA = EPS / STEPS


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = create_model("cnn", 10, 3, 12, width=0.5).double().eval()  # 3 channels: torchattacks' TI is RGB-only
    x = torch.rand(6, 3, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(2))
    return model, x, y


def _ours(name, model, x, y, **kw):
    return create_attack(name, model, eps=EPS, label_source="given", **kw)(x, y)


def _check(ours, theirs, x):
    assert ours.dtype == torch.float64
    assert (ours - x).abs().max() > 0.5 * EPS  # the attack moved
    assert (ours - theirs).abs().max().item() <= 1e-6


@pytest.mark.parametrize("name,make", [
    ("fgsm", lambda m: torchattacks.FGSM(m, eps=EPS)),
    ("i-fgsm", lambda m: torchattacks.BIM(m, eps=EPS, alpha=ALPHA, steps=STEPS)),
    ("mi-fgsm", lambda m: torchattacks.MIFGSM(m, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0)),
    ("ni-fgsm", lambda m: torchattacks.NIFGSM(m, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0)),
])
def test_basic_family_equals_torchattacks(setup, name, make):
    model, x, y = setup
    _check(_ours(name, model, x, y), make(model)(x, y), x)


def test_si_ni_fgsm_with_black_centre_equals_torchattacks(setup):
    model, x, y = setup
    theirs = torchattacks.SINIFGSM(model, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0, m=5)(x, y)
    _check(_ours("si-ni-fgsm", model, x, y, si_center=0.0), theirs, x)


def test_di_mi_fgsm_deterministic_part_equals_torchattacks(setup):
    model, x, y = setup
    theirs = torchattacks.DIFGSM(model, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0, diversity_prob=0.0)(x, y)
    _check(_ours("di-mi-fgsm", model, x, y, di_prob=0.0), theirs, x)


def test_ti_mi_fgsm_equals_torchattacks_without_diversity(setup):
    model, x, y = setup
    ta = torchattacks.TIFGSM(model, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0, len_kernel=7, nsig=3,
                             diversity_prob=0.0)
    ta.stacked_kernel = torch.from_numpy(np.stack([ta.gkern(7, 3)] * 3)[:, None])  # its own kernel, in float64
    _check(_ours("ti-mi-fgsm", model, x, y), ta(x, y), x)


@pytest.mark.parametrize("name,cls", [("vmi-fgsm", "VMIFGSM"), ("vni-fgsm", "VNIFGSM")])
def test_variance_tuning_equals_torchattacks_with_aligned_sampling(setup, monkeypatch, name, cls):
    """torchattacks draws neighbours as ``randn_like(x).uniform_(-r, r)`` from the global generator; the randn
    values are overwritten, so replacing randn_like by empty_like only aligns the random streams: both then
    draw the same U(-r, r) numbers in the same order from a generator seeded with the same seed."""
    model, x, y = setup
    ours = _ours(name, model, x, y, samples=5, seed=11)
    monkeypatch.setattr(torch, "randn_like", torch.empty_like)
    torch.manual_seed(11)
    theirs = getattr(torchattacks, cls)(model, eps=EPS, alpha=ALPHA, steps=STEPS, decay=1.0, N=5, beta=1.5)(x, y)
    _check(ours, theirs, x)
