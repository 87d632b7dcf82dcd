import pytest
import torch

from modelsafe.adversarial import (
    DepthFirstSampling,
    Ensemble,
    VarianceTuning,
    create_attack,
    depth_first_walk,
)
from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model

from .conftest import CountingModel


def test_walk_steps_are_uniform_on_minus_to_plus_radius():
    start = torch.zeros(50, 1, 16, 16)
    radius = 1.5 * 0.1
    walk = depth_first_walk(start, 12, radius, torch.Generator().manual_seed(0))
    assert walk.shape == (12, 50, 1, 16, 16)
    steps = torch.diff(torch.cat([start.unsqueeze(0), walk]), dim=0).flatten().double()
    assert steps.abs().max() <= radius + 1e-6
    assert steps.abs().max() > 0.99 * radius
    assert steps.mean().abs() < 0.005 * radius * 10
    assert steps.var().item() == pytest.approx(radius ** 2 / 3, rel=0.02)
    # empirical CDF against U(-r, r): Kolmogorov-Smirnov distance
    s = steps.sort().values
    cdf = (s + radius) / (2 * radius)
    ecdf = torch.arange(1, len(s) + 1, dtype=torch.float64) / len(s)
    assert (cdf - ecdf).abs().max() < 0.01
    # depth first: spread grows like sqrt(i) (variance i r^2 / 3)
    var_last = walk[-1].double().var().item()
    assert var_last == pytest.approx(12 * radius ** 2 / 3, rel=0.05)


def test_walk_is_chained_from_the_start_point():
    start = torch.rand(2, 1, 4, 4)
    walk = depth_first_walk(start, 3, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(walk, start.expand(3, -1, -1, -1, -1))


def test_dfs_combine_weights_centre_by_gamma():
    est = DepthFirstSampling(samples=3, gamma=2.0)
    grads = torch.stack([torch.full((1, 1, 1, 1), v) for v in (1.0, 2.0, 3.0, 4.0)])
    assert est.combine(grads, {}).item() == pytest.approx((2 * 1 + 2 + 3 + 4) / 5)


def test_variance_tuning_carries_variance_to_next_step():
    est = VarianceTuning(samples=2)
    state = est.init_state(torch.zeros(1, 1, 1, 1))
    g = torch.stack([torch.full((1, 1, 1, 1), v) for v in (1.0, 3.0, 5.0)])
    assert est.combine(g, state).item() == 1.0          # v_0 = 0
    assert state["variance"].item() == pytest.approx(3.0)  # mean(3, 5) - 1
    assert est.combine(g, state).item() == pytest.approx(4.0)


@pytest.mark.parametrize("name,per_step", [("smi-fgrm", 13), ("sni-fgrm", 13), ("mi-fgsm", 1), ("vmi-fgsm", 21)])
def test_gradient_evaluations_per_iteration(cnn, images, name, per_step):
    counted = CountingModel(cnn)
    batch = images.shape[0]
    attack = create_attack(name, counted, eps=0.1, steps=2, chunk_size=batch)
    attack(images)
    # one forward for the clean prediction, then exactly per_step calls (N+1 for DFS) per iteration
    assert counted.calls == 1 + 2 * per_step
    assert counted.rows == batch * (1 + 2 * per_step)
    assert attack.forward_rows == 2 * per_step * batch


def test_chunking_changes_calls_not_results(cnn, images):
    counted = CountingModel(cnn)
    a = create_attack("smi-fgrm-ct", counted, eps=0.1, steps=2, samples=3, chunk_size=7, seed=3)(images)
    rows = images.shape[0] * 2 * 4 * 5  # batch x steps x (N+1) x SI copies
    assert counted.rows == images.shape[0] + rows
    assert counted.calls == 1 + 2 * -(-images.shape[0] * 4 * 5 // 7)
    b = create_attack("smi-fgrm-ct", cnn, eps=0.1, steps=2, samples=3, chunk_size=1000, seed=3)(images)
    assert torch.allclose(a, b, atol=1e-6)


def test_memory_saving_ensemble_gradient_equals_joint(images):
    torch.manual_seed(0)
    members = [create_model("cnn", 10, 1, 12).double(), create_model("mlp", 10, 1, 12).double()]
    joint = Ensemble(members, weights=[2, 1])
    lean = Ensemble(members, weights=[2, 1], memory_saving=True)
    assert joint.weights == pytest.approx([2 / 3, 1 / 3])
    x, y = images.double(), torch.tensor([0, 1, 2, 3, 4, 5])
    leaf = x.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(joint(leaf), y, reduction="sum")  # loss of the averaged logits
    want = torch.autograd.grad(loss, leaf)[0]
    got = lean.input_gradient(leaf, lambda j: leaf, y, create_attack("mi-fgsm", lean)._loss)
    assert torch.allclose(got, want, atol=1e-12)
    per_member = sum(w * torch.autograd.grad(torch.nn.functional.cross_entropy(m(leaf), y, reduction="sum"),
                                             leaf)[0] for w, m in zip(joint.weights, members))
    assert not torch.allclose(per_member, want, atol=1e-6)  # the naive sum of member losses is different
    a = create_attack("smi-fgrm", joint, eps=0.1, steps=3, samples=2)(x)
    b = create_attack("smi-fgrm", lean, eps=0.1, steps=3, samples=2)(x)
    assert (a - b).abs().max() < 1e-9


def test_estimator_parameter_checks():
    with pytest.raises(ModelsafeError, match="samples"):
        DepthFirstSampling(samples=0)
    with pytest.raises(ModelsafeError, match="beta"):
        VarianceTuning(beta=-1)
    with pytest.raises(ModelsafeError, match="walk_start"):
        DepthFirstSampling(walk_start="middle")


def test_smi_fgrm_equals_a_straightforward_loop_in_float64(cnn, images):
    """N+1 separate forward/backward calls per step, written out by hand, with the same random walk: the
    chunked implementation gives the same images (float64, so rounding cannot flip a near-zero step)."""
    from modelsafe.adversarial import rescale_official

    model, x0 = _double(cnn), images.double()
    with torch.no_grad():
        y = model(x0).argmax(1)
    eps, steps, n, beta = 0.1, 4, 5, 1.5
    gen = torch.Generator().manual_seed(3)
    x, mom = x0.clone(), torch.zeros_like(x0)
    for _ in range(steps):
        walk = torch.empty((n, *x.shape), dtype=x.dtype).uniform_(-beta * eps, beta * eps, generator=gen)
        point, total = x, torch.zeros_like(x)
        for i in range(n + 1):
            point = point + walk[i - 1] if i else point
            leaf = point.detach().requires_grad_(True)
            total += torch.autograd.grad(torch.nn.functional.cross_entropy(model(leaf), y, reduction="sum"), leaf)[0]
        avg = total / (n + 1)
        mom = mom + avg / avg.abs().mean((1, 2, 3), keepdim=True)
        x = torch.clamp(x0 + torch.clamp(x + eps / steps * rescale_official(mom) - x0, -eps, eps), 0, 1)
    adv = create_attack("smi-fgrm", model, eps=eps, steps=steps, samples=n, chunk_size=7)(x0, y, seed=3)
    assert (adv - x).abs().max().item() < 1e-9
    assert (adv - x0).abs().max().item() > 0.05  # the attack moved the images


def _double(model):
    import copy

    return copy.deepcopy(model).double().eval()
