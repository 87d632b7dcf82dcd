"""Parts written outside the library (here) run through AttackSpec, TransferAttack and the presets, and give
the hand-computed result on a linear model in float64; parts that break a protocol are refused clearly."""

from dataclasses import dataclass, replace

import pytest
import torch
from torch import nn

from modelsafe.adversarial import (
    AttackSpec,
    DepthFirstSampling,
    GradientEstimator,
    InputTransform,
    ModelCombination,
    Momentum,
    ScaleCopies,
    StepDirection,
    TransferAttack,
    create_attack,
)
from modelsafe.errors import ModelsafeError

SHAPE = (1, 3, 4)  # (C, H, W): a mirror along W is not the identity


@dataclass(frozen=True)
class Shifted(GradientEstimator):
    """The gradient at ``center + delta``: one oracle call of one point."""

    delta: float = 0.05

    def estimate(self, grad_fn, x, center, eps, state, generator):
        return grad_fn((center + self.delta).unsqueeze(0))[0]


@dataclass(frozen=True)
class TwoStage(GradientEstimator):
    """Two oracle calls in sequence: the gradient at ``x + r * sign(g(x))``, where the point needs g(x)."""

    r: float = 0.02

    def estimate(self, grad_fn, x, center, eps, state, generator):
        first = grad_fn(center.unsqueeze(0))[0]
        return grad_fn((center + self.r * first.sign()).unsqueeze(0))[0]


class Mirror(InputTransform):
    """Two views, not a dataclass: the image and its left-right mirror, weighted 3 : 1."""

    def views(self):
        return 2

    def weights(self):
        return torch.tensor([3.0, 1.0], dtype=torch.float64)

    def apply(self, x, view, point, member, draw):
        assert view.device.type == "cpu" and point.device.type == "cpu"  # the protocol: indices on the CPU
        return torch.where((view == 1).to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


class Identity(StepDirection):
    """The buffer itself, so the step shows the gradient exactly."""

    def __call__(self, g):
        return g


class Crop(InputTransform):
    def views(self):
        return 1

    def apply(self, x, view, point, member, draw):
        return x[..., :2]


class Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.randn(3, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def forward(self, x):
        return x.flatten(1) @ self.weight.T


def loss_gradient(model, x, y):
    """d CE(Wx, y) / dx = W^T (softmax(Wx) - onehot(y)), by hand."""
    p = torch.softmax(model(x), 1) - nn.functional.one_hot(y, 3).double()
    return (p @ model.weight).view_as(x)


def mirrored_gradient(model, x, y):
    """(3 g(x) + flip(g(flip x))) / 4: the chain rule through the mirror view."""
    return (3 * loss_gradient(model, x, y) + loss_gradient(model, x.flip(-1), y).flip(-1)) / 4


@pytest.fixture
def setup():
    x = 0.4 + 0.2 * torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return Linear(), x, torch.tensor([0, 1, 2, 0, 1])


def one_step(x0, g, alpha):
    return x0 + alpha * g / g.abs().mean((1, 2, 3), keepdim=True)


def test_own_estimator_and_transform_give_the_hand_computed_step(setup):
    model, x0, y = setup
    spec = AttackSpec(eps=0.3, steps=1, alpha=0.01, estimator=Shifted(0.05), transforms=(Mirror(),),
                      update=Momentum(0.0), direction=Identity())
    attack = TransferAttack(model, spec)
    adv = attack(x0, y)
    want = one_step(x0, mirrored_gradient(model, x0 + 0.05, y), 0.01)
    assert (adv - want).abs().max().item() < 1e-12
    assert attack.last_compute.gradient_evaluations_per_image == 2  # one point, two views
    assert spec.describe()["transforms"] == [{"kind": "Mirror"}]
    assert spec.describe()["estimator"] == {"kind": "Shifted", "delta": 0.05}


def test_sequential_estimator_takes_its_second_gradient_where_the_first_points(setup):
    model, x0, y = setup
    attack = create_attack("i-fgsm", model, eps=0.3, steps=1, alpha=0.01, estimator=TwoStage(0.02),
                           direction=Identity())
    adv = attack(x0, y)
    first = loss_gradient(model, x0, y)
    want = one_step(x0, loss_gradient(model, x0 + 0.02 * first.sign(), y), 0.01)
    assert (adv - want).abs().max().item() < 1e-12
    assert attack.last_compute.gradient_evaluations_per_image == 2


def test_presets_take_own_parts_and_keep_the_rest(setup):
    model, x0, y = setup
    preset = create_attack("mi-fgsm", model, eps=0.1, steps=3)
    swapped = TransferAttack(model, replace(preset.spec, estimator=Shifted(0.05), transforms=(Mirror(),)))
    by_override = create_attack("mi-fgsm", model, eps=0.1, steps=3, estimator=Shifted(0.05), transforms=[Mirror()])
    x, g = x0.clone(), torch.zeros_like(x0)
    for _ in range(3):  # MI-FGSM by hand, with the own gradient
        d = mirrored_gradient(model, x + 0.05, y)
        g = g + d / d.abs().mean((1, 2, 3), keepdim=True)
        x = torch.clamp(x0 + torch.clamp(x + 0.1 / 3 * g.sign() - x0, -0.1, 0.1), 0, 1)
    assert (swapped(x0, y) - x).abs().max().item() < 1e-12
    assert torch.equal(by_override(x0, y), swapped(x0, y))
    assert not torch.equal(preset(x0, y), x)


def test_own_transform_composes_with_scale_copies(setup):
    model, x0, y = setup
    attack = create_attack("si-ni-fgsm", model, eps=0.3, steps=1, alpha=0.01, si_copies=2, si_center=0.0,
                           momentum=0.0, transforms=(Mirror(),), direction=Identity())
    adv = attack(x0, y)
    # views: mirror (3 : 1) x scale (1 : 1); the model sees scale(mirror(x)); chain rule factor 2^-i
    grad = sum(mirrored_gradient(model, x0 * s, y) * s for s in (1.0, 0.5)) / 2
    assert (adv - one_step(x0, grad, 0.01)).abs().max().item() < 1e-12
    assert attack.last_compute.gradient_evaluations_per_image == 4


class NoEstimate:
    def init_state(self, x):
        return {}


class NoApply:
    def views(self):
        return 1

    def weights(self):
        return torch.ones(1)

    def prepare(self, points, members, shape, generator):
        return None


@pytest.mark.parametrize("fields,match", [
    ({"estimator": NoEstimate()}, r"estimator must be a GradientEstimator.*NoEstimate has no method estimate"),
    ({"transforms": (Mirror(), NoApply())}, r"transforms\[1\] must be an InputTransform.*NoApply has no method apply"),
    ({"scales": NoApply()}, r"scales must be an InputTransform.*no method apply"),
    ({"estimator": "dfs"}, r"estimator must be a GradientEstimator.*str has no method init_state, estimate"),
    ({"direction": DepthFirstSampling()}, r"direction must be a StepDirection.*no method __call__"),
    ({"update": 1.0}, r"update must be an UpdateRule.*float"),
    ({"estimator": DepthFirstSampling}, r"estimator must be a GradientEstimator instance, got the class"),
    ({"transforms": Mirror()}, r"transforms must be a tuple"),
])
def test_parts_that_break_their_protocol_are_refused_at_construction(fields, match):
    with pytest.raises(ModelsafeError, match=match):
        AttackSpec(**fields)


def test_preset_overrides_check_own_parts(setup):
    model, _, _ = setup
    with pytest.raises(ModelsafeError, match="smoothing must be a GradientTransform"):
        create_attack("mi-fgsm", model, smoothing=ScaleCopies())
    with pytest.raises(ModelsafeError, match="si_copies do not apply.*Mirror"):
        create_attack("si-ni-fgsm", model, scales=Mirror(), si_copies=3)


def test_transform_the_model_cannot_take_is_named(setup):
    model, x0, y = setup
    with pytest.raises(ModelsafeError, match=r"cannot take the output of input transform\(s\) Crop "
                                             r"\(5, 1, 3, 4\) -> \(5, 1, 3, 2\)"):
        create_attack("mi-fgsm", model, eps=0.1, steps=2, transforms=(Crop(),))(x0, y)

    class Rows(Crop):
        def apply(self, x, view, point, member, draw):
            return x[:1]

    with pytest.raises(ModelsafeError, match="input transform Rows must return 5 rows"):
        create_attack("mi-fgsm", model, eps=0.1, steps=2, transforms=(Rows(),))(x0, y)


class FlatPoints(GradientEstimator):
    """Calls the oracle with (N, C, H, W) instead of (K, N, C, H, W) points."""

    def estimate(self, grad_fn, x, center, eps, state, generator):
        return grad_fn(center)


class Summed(GradientEstimator):
    """Returns one number instead of an (N, C, H, W) gradient."""

    def estimate(self, grad_fn, x, center, eps, state, generator):
        return grad_fn(center.unsqueeze(0)).sum()


class BadWeights(Mirror):
    def weights(self):
        return torch.tensor([1.0, -1.0], dtype=torch.float64)


@pytest.mark.parametrize("fields,match", [
    ({"estimator": FlatPoints()}, r"grad_fn takes \(K, 5, C, H, W\) points, got \(5, 1, 3, 4\)"),
    ({"estimator": Summed()}, r"estimator Summed must return a gradient of shape \(5, 1, 3, 4\), got \(\)"),
    ({"transforms": (BadWeights(),)}, r"input transform BadWeights must give 2 non-negative weights"),
])
def test_parts_that_break_their_contract_at_run_time_are_named(setup, fields, match):
    model, x0, y = setup
    with pytest.raises(ModelsafeError, match=match):
        TransferAttack(model, AttackSpec(eps=0.1, steps=1, **fields))(x0, y)


class Doubled(ModelCombination):
    """A combination of its own: the mean logits of one model on the image and on twice the image."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.members = [model]

    def forward(self, x):
        return (self.model(x) + self.model(2 * x)) / 2

    def input_gradient(self, leaf, inputs, y, loss):
        x = inputs(0)
        return torch.autograd.grad(loss((self.model(x) + self.model(2 * x)) / 2, y), leaf)[0]


def test_own_model_combination_is_asked_for_the_gradient_and_counted(setup):
    model, x0, y = setup
    attack = create_attack("i-fgsm", Doubled(model), eps=0.3, steps=1, alpha=0.01, direction=Identity())
    adv = attack(x0, y)
    logits = (model(x0) + model(2 * x0)) / 2
    p = torch.softmax(logits, 1) - nn.functional.one_hot(y, 3).double()
    grad = (p @ model.weight).view_as(x0) * 1.5  # d/dx of (Wx + 2Wx) / 2
    assert (adv - one_step(x0, grad, 0.01)).abs().max().item() < 1e-12
    c = attack.last_compute
    assert (c.forward_per_image, c.backward_per_image, c.gradient_evaluations_per_image) == (4, 2, 1)
