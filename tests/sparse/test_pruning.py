import pytest
import torch

from modelsafe.errors import ModelsafeError
from modelsafe.sparse import DynamicSparsity, GradualPruning, cubic_sparsity


def test_cubic_schedule_follows_zhu_and_gupta():
    assert cubic_sparsity(0, 0.9, 10, 110) == 0.0
    assert cubic_sparsity(60, 0.9, 10, 110) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert cubic_sparsity(110, 0.9, 10, 110) == pytest.approx(0.9)
    assert cubic_sparsity(500, 0.9, 10, 110) == pytest.approx(0.9)


def test_gmp_prunes_monotonically_to_the_exact_target(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    gmp = GradualPruning(net, opt, 0.1, total_steps=60, begin=0.1, end=0.75, interval=5)
    assert gmp.nnz == 644 and (gmp.begin, gmp.end) == (6, 45)
    previous = {n: m.clone() for n, m in gmp.masks.items()}
    counts = []
    for batch in tools.make_batches(60, batch=8):
        tools.train_step(net, opt, batch)
        gmp.step()
        for name, mask in gmp.masks.items():
            assert not (mask & ~previous[name]).any()  # nothing ever regrows
            assert not net.get_parameter(name).detach()[~mask].any()
        previous = {n: m.clone() for n, m in gmp.masks.items()}
        counts.append(gmp.nnz)
    assert counts == sorted(counts, reverse=True)
    assert counts[44] == gmp.nnz == round(0.1 * 644) and counts[43] > counts[44]
    assert gmp.masked.layer_counts() == gmp.final_counts
    assert gmp.prunings == len([t for t in range(6, 46) if t % 5 == 0 or t == 45])


def test_gmp_state_dict_round_trip(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gmp = GradualPruning(net, opt, 0.2, total_steps=20, interval=2)
    for batch in tools.make_batches(9, batch=4):
        tools.train_step(net, opt, batch)
        gmp.step()
    net2 = tools.make_net(1)
    restored = GradualPruning(net2, torch.optim.SGD(net2.parameters(), lr=0.1), 0.2, total_steps=20, interval=2)
    restored.load_state_dict(gmp.state_dict())
    assert restored.step_count == 9 and restored.nnz == gmp.nnz
    assert all(torch.equal(restored.masks[n], gmp.masks[n]) for n in gmp.masks)
    with pytest.raises(ModelsafeError, match="schedule"):
        GradualPruning(net2, torch.optim.SGD(net2.parameters(), lr=0.1), 0.2, total_steps=40,
                       interval=2).load_state_dict(gmp.state_dict())


def test_magnitude_init_keeps_the_largest_weights(net):
    weights = {n: p.detach().clone() for n, p in net.named_parameters()}
    engine = DynamicSparsity(net, torch.optim.SGD(net.parameters(), lr=0.1), 0.3, update_interval=None,
                             init="magnitude")
    for name, mask in engine.masks.items():
        kept, dropped = weights[name].abs()[mask], weights[name].abs()[~mask]
        assert kept.min() >= dropped.max()
        assert torch.equal(net.get_parameter(name).detach()[mask], weights[name][mask])
