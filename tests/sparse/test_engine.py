import copy
import io
import math

import pytest
import torch
from torch import nn

from modelsafe.errors import ModelsafeError, UnknownNameError
from modelsafe.sparse import (
    Candidate,
    DynamicSparsity,
    LayerSelection,
    Strategy,
    UpdateSchedule,
    register_grow_rule,
)
from modelsafe.sparse.rules import GROW_RULES

ALL_RULES = [("magnitude", "gradient"), ("magnitude", "random"), ("magnitude", "momentum"),
             ("magnitude", "random-unfired"), ("magnitude", "gradient-smallest"), ("set", "random"),
             ("set", "gradient")]


def snapshot(model, optimizer, engine) -> dict:
    return {"model": {k: v.clone() for k, v in model.state_dict().items()},
            "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            "optimizer": copy.deepcopy(optimizer.state_dict()), "engine": copy.deepcopy(engine.state_dict()),
            "rng": torch.get_rng_state()}


def identical(a, b) -> bool:
    """Bitwise equality of nested tensors / containers."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b))
    return a == b


def dead_positions_are_zero(engine, optimizer) -> bool:
    for name, mask in engine.masks.items():
        param = engine.masked.layers[name].param
        tensors = [param.detach()] + ([param.grad] if param.grad is not None else [])
        tensors += [v for v in optimizer.state.get(param, {}).values()
                    if isinstance(v, torch.Tensor) and v.shape == param.shape]
        for t in tensors:
            if t[~mask].view(torch.int32 if t.dtype == torch.float32 else torch.int64).any():
                return False  # any bit set, so -0.0 also fails
    return True


@pytest.mark.parametrize("prune,grow", ALL_RULES)
def test_counts_exact_after_init_and_100_updates(net, tools, prune, grow):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    engine = DynamicSparsity(net, opt, 0.3, schedule=UpdateSchedule.for_training(200, interval=1, end=1.0),
                             prune=prune, grow=grow)
    per_layer = engine.masked.layer_counts()
    assert engine.nnz == engine.target_nnz == round(0.3 * 644)
    assert per_layer == engine.target_counts
    updates = 0
    for batch in tools.make_batches(100, batch=8):
        tools.train_step(net, opt, batch)
        applied = engine.step()
        updates += applied is not None
        assert engine.nnz == engine.target_nnz
        assert engine.masked.layer_counts() == per_layer
    assert updates == 100 and engine.updates == 100
    assert dead_positions_are_zero(engine, opt)
    assert engine.itop_rate() > 0.3


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2, amsgrad=True),
], ids=["sgd", "sgd-nesterov", "adamw", "adam-amsgrad"])
def test_weights_grads_and_optimizer_state_stay_zero(net, tools, make_opt):
    opt = make_opt(net.parameters())
    engine = DynamicSparsity(net, opt, 0.2, schedule=UpdateSchedule.for_training(60, interval=5, end=1.0))
    for batch in tools.make_batches(60, batch=8):
        x, y = batch
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        assert dead_positions_are_zero(engine, opt)  # gradients masked during backward
        opt.step()
        engine.step()
        assert dead_positions_are_zero(engine, opt)
    moments = [k for s in opt.state.values() for k in s if k in ("momentum_buffer", "exp_avg", "exp_avg_sq")]
    assert moments  # the optimizer state was really there and checked
    assert engine.updates == 11


def test_optimizer_alone_cannot_revive_dead_weights(net, tools):
    """Masked gradients + zero state: a plain optimizer step (no engine.step()) keeps dead weights at zero,
    including AdamW's decoupled weight decay."""
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.5)
    engine = DynamicSparsity(net, opt, 0.2, update_interval=None)
    for batch in tools.make_batches(5, batch=8):
        tools.train_step(net, opt, batch)
    assert dead_positions_are_zero(engine, opt)


def test_grown_weights_start_at_zero_with_zero_state(net, tools):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    engine = DynamicSparsity(net, opt, 0.2, schedule=UpdateSchedule.for_training(40, interval=10, end=1.0),
                             grow="random")
    batches = tools.make_batches(10, batch=8)
    for batch in batches[:9]:
        tools.train_step(net, opt, batch)
        engine.step()
    tools.train_step(net, opt, batches[9])
    before = {n: m.clone() for n, m in engine.masks.items()}
    candidate = engine.step()
    assert isinstance(candidate, Candidate)
    for name, mask in engine.masks.items():
        param = engine.masked.layers[name].param
        fresh = (mask & ~before[name]) | candidate.reset[name]
        assert fresh.any()
        assert not param.detach()[fresh].any()
        for key in ("exp_avg", "exp_avg_sq"):
            assert not opt.state[param][key][fresh].any()
        survivors = mask & before[name] & ~candidate.reset[name]
        assert opt.state[param]["exp_avg_sq"][survivors].gt(0).any()  # surviving weights keep their state


def test_prune_and_grow_counts_balance(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    engine = DynamicSparsity(net, opt, 0.25, total_steps=100, update_interval=1, track_momentum=True,
                             capture_gradients=True)
    tools.train_step(net, opt, tools.make_batches(1)[0])
    engine.step()
    for candidate in engine.propose([("magnitude", "gradient"), ("set", "random", 3), ("magnitude", "momentum")]):
        for name, old in engine.masks.items():
            new = candidate.masks[name]
            k = candidate.removed[name]
            assert k == candidate.grown[name] == math.ceil(candidate.drop_fraction * int(old.sum()))
            # positions that left == positions that arrived; reset ones were dropped and regrown
            assert int((old & ~new).sum()) == int((new & ~old).sum())
            assert int((old & ~new).sum()) + int(candidate.reset[name].sum()) == k
            assert int(new.sum()) == int(old.sum())


def test_propose_leaves_model_optimizer_and_engine_bit_identical(net, tools):
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=100, update_interval=10, grow="momentum",
                             capture_gradients=True)
    for batch in tools.make_batches(7, batch=8):
        tools.train_step(net, opt, batch)
        engine.step()
    before = snapshot(net, opt, engine)
    strategies = [Strategy(p, g, seed) for p, g in ALL_RULES for seed in (0, 1)]
    candidates = engine.propose(strategies)
    assert len(candidates) == len(strategies)
    assert identical(snapshot(net, opt, engine), before)
    # deterministic, and the seed varies random choices
    again = engine.propose(strategies)
    assert all(identical(a.masks, b.masks) for a, b in zip(candidates, again))
    random0, random1 = (c for c in candidates if c.strategy.grow == "random" and c.strategy.prune == "magnitude")
    assert not identical(random0.masks, random1.masks)


def test_trial_and_candidate_model_leave_the_live_model_intact(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.3, total_steps=100, update_interval=1, capture_gradients=True,
                             track_momentum=True)
    x, _ = tools.make_batches(1)[0]
    tools.train_step(net, opt, tools.make_batches(1)[0])
    candidate = engine.propose([Strategy("magnitude", "gradient", drop_fraction=0.5)])[0]
    before = snapshot(net, opt, engine)
    with engine.trial(candidate) as model:
        tried = model(x).detach()
        for name, layer in engine.masked.layers.items():
            assert not layer.param.detach()[~candidate.masks[name]].any()
        torch.autograd.grad(model(x).sum(), list(model.parameters()))  # e.g. a white-box attack's features
    assert identical(snapshot(net, opt, engine), before)
    copy_ = engine.candidate_model(candidate)
    assert torch.equal(copy_(x), tried)
    assert identical(snapshot(net, opt, engine), before)
    # the copy carries no masking hooks
    copy_(x).sum().backward()
    assert copy_.fc.weight.grad[~engine.masks["fc.weight"]].any()


def test_gradient_rules_pick_largest_and_smallest_inactive_gradients():
    model = nn.Sequential(nn.Linear(10, 10, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    engine = DynamicSparsity(model, opt, 0.5, distribution="uniform", update_interval=None,
                             capture_gradients=True)
    target = torch.randn(10, 10, generator=torch.Generator().manual_seed(1))
    opt.zero_grad()
    (model[0].weight * target).sum().backward()  # dense gradient == target
    mask = engine.masks["0.weight"]
    for rule, largest in (("gradient", True), ("gradient-smallest", False)):
        cand = engine.propose([Strategy("magnitude", rule, drop_fraction=0.2)])[0]
        removed = mask & ~cand.masks["0.weight"] | cand.reset["0.weight"]
        pool = ~(mask & ~removed)
        k = cand.grown["0.weight"]
        scores = target.abs()[pool]
        expected = torch.sort(scores, descending=largest).values[:k]
        grown = (cand.masks["0.weight"] & ~(mask & ~removed))
        assert int(grown.sum()) == k == 10
        assert torch.equal(torch.sort(target.abs()[grown], descending=largest).values, expected)


def test_magnitude_and_set_prune_pick_the_right_weights():
    model = nn.Sequential(nn.Linear(20, 1, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    engine = DynamicSparsity(model, opt, 0.95, distribution="uniform", update_interval=None)
    mask = torch.ones(1, 20, dtype=torch.bool)
    mask[0, 0] = False
    engine.apply({"0.weight": mask})
    # index 0 inactive; 9 negatives (-0.5 at 1 ... -1.3 at 9); 10 small positives (0.05 at 10 ... 0.14 at 19)
    values = [0.0] + [-0.5 - 0.1 * i for i in range(9)] + [0.05 + 0.01 * i for i in range(10)]
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(values).view(1, 20))

    def removed(strategy):
        cand = engine.propose([strategy])[0]
        gone = (engine.masks["0.weight"] & ~cand.masks["0.weight"]) | cand.reset["0.weight"]
        return set(gone.flatten().nonzero().flatten().tolist())

    # k = ceil(0.2 * 19) = 4
    assert removed(Strategy("magnitude", "random", drop_fraction=0.2)) == {10, 11, 12, 13}
    # SET: k split 2/2 between signs: the smallest positives and the negatives closest to zero
    assert removed(Strategy("set", "random", drop_fraction=0.2)) == {10, 11, 1, 2}


def test_random_unfired_prefers_never_active_positions(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=100, update_interval=1)
    for name in engine.fired:  # pretend half of every layer has fired before
        engine.fired[name] = engine.fired[name] | (torch.arange(engine.fired[name].numel()) % 2 == 0).view_as(
            engine.fired[name])
    cand = engine.propose([Strategy("magnitude", "random-unfired", drop_fraction=0.3)])[0]
    for name, old in engine.masks.items():
        grown = cand.masks[name] & ~old
        assert grown.any() and not (grown & engine.fired[name]).any()


def test_schedule_decays_from_half_and_stops_at_three_quarters(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=100, update_interval=10)
    fractions = {}
    for batch in tools.make_batches(100, batch=4):
        tools.train_step(net, opt, batch)
        applied = engine.step()
        if applied is not None:
            fractions[engine.step_count] = applied.drop_fraction
    assert sorted(fractions) == [10, 20, 30, 40, 50, 60, 70]
    expected = {t: 0.005 + 0.495 * 0.5 * (1 + math.cos(math.pi * t / 75)) for t in fractions}
    assert fractions == pytest.approx(expected)
    assert engine.schedule.fraction(0) == 0.5 and engine.schedule.fraction(75) == pytest.approx(0.005)


def test_selector_hook_chooses_among_candidates(net, tools):
    seen = []

    def selector(candidates, engine):
        seen.append([c.strategy.describe() for c in candidates])
        assert engine.update_due()
        return 1

    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=40, update_interval=5,
                             strategies=["magnitude/gradient", ("magnitude", "random", 7)], selector=selector)
    for batch in tools.make_batches(10, batch=4):
        tools.train_step(net, opt, batch)
        applied = engine.step()
    assert seen == [["magnitude/gradient", "magnitude/random#7"]] * 2
    assert applied.strategy == Strategy("magnitude", "random", 7)
    assert [h["strategy"] for h in engine.history] == ["magnitude/random#7"] * 2


def test_manual_mode_leaves_updates_to_the_caller(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=40, update_interval=5, auto_update=False)
    start = {n: m.clone() for n, m in engine.masks.items()}
    for batch in tools.make_batches(5, batch=4):
        tools.train_step(net, opt, batch)
        assert engine.step() is None
    assert engine.update_due() and identical(engine.masks, start)
    chosen = engine.propose(["magnitude/gradient", "magnitude/random"])[1]
    engine.apply(chosen)
    assert identical(engine.masks, chosen.masks) and engine.updates == 1


def run(tools, steps, grow, state=None, stop=None):
    net = tools.make_net(3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    engine = DynamicSparsity(net, opt, 0.2, total_steps=40, update_interval=4, grow=grow, seed=5)
    start = 0
    if state is not None:
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        engine.load_state_dict(state["engine"])
        start = engine.step_count
    batches = tools.make_batches(steps, batch=8, seed=9)
    for batch in batches[start:stop]:
        tools.train_step(net, opt, batch)
        engine.step()
    return net, opt, engine


@pytest.mark.parametrize("grow", ["random", "momentum", "gradient"])
def test_state_dict_round_trip_resumes_exactly(tools, grow):
    full_net, _, full_engine = run(tools, 30, grow)
    net, opt, engine = run(tools, 30, grow, stop=17)
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "engine": engine.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert identical(state["engine"], engine.state_dict())
    resumed_net, _, resumed_engine = run(tools, 30, grow, state=state)
    assert identical(resumed_net.state_dict(), full_net.state_dict())
    assert identical(resumed_engine.state_dict(), full_engine.state_dict())
    assert resumed_engine.updates == full_engine.updates == 7


def test_layer_selection_options(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    assert DynamicSparsity(net, opt, 0.5, update_interval=None).layer_names == ["conv1.weight", "conv2.weight",
                                                                                "fc.weight"]
    dense_first = LayerSelection(dense_first=True)
    assert DynamicSparsity(net, opt, 0.5, update_interval=None, layers=dense_first).layer_names == [
        "conv2.weight", "fc.weight"]
    engine = DynamicSparsity(net, opt, 0.5, update_interval=None, layers=LayerSelection(dense_layers=["fc"]))
    assert engine.layer_names == ["conv1.weight", "conv2.weight"]
    assert engine.nnz == round(0.5 * (36 + 288))
    with pytest.raises(ModelsafeError, match="names no prunable layer: head"):
        DynamicSparsity(net, opt, 0.5, update_interval=None, layers=LayerSelection(dense_layers=["head"]))
    with pytest.raises(ModelsafeError, match="nothing is left"):
        DynamicSparsity(net, opt, 0.5, update_interval=None,
                        layers=LayerSelection(dense_layers=["conv1", "conv2", "fc"]))


def test_reports_density_itop_params_and_flops(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.1, update_interval=None)
    summary = engine.summary()
    assert summary["density"] == engine.nnz / 644 and summary["nnz"] == 64
    assert summary["params"]["total"] == 644 + 4 + 8 + 10
    assert summary["params"]["active"] == 64 + 22
    assert engine.itop_rate() == pytest.approx(64 / 644)
    flops = engine.flops(torch.rand(1, 1, 6, 6))
    # conv1: 36 weights x 16 positions, conv2: 288 x 4, fc: 320 x 1; times 2
    assert flops["dense"] == 2 * (36 * 16 + 288 * 4 + 320)
    per_layer = {n: engine.masked.layer_counts()[n] for n in engine.layer_names}
    assert flops["sparse"] == 2 * (per_layer["conv1.weight"] * 16 + per_layer["conv2.weight"] * 4
                                   + per_layer["fc.weight"])


def test_remove_detaches_the_gradient_hooks(net, tools):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    engine = DynamicSparsity(net, opt, 0.1, update_interval=None)
    engine.remove()
    x, y = tools.make_batches(1)[0]
    nn.functional.cross_entropy(net(x), y).backward()
    assert net.fc.weight.grad[~engine.masks["fc.weight"]].any()


def test_bad_input_gives_clear_errors(net):
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for density in (0, 1.01, -1):
        with pytest.raises(ModelsafeError, match="density"):
            DynamicSparsity(net, opt, density, update_interval=None)
    no_layers = nn.Sequential(nn.BatchNorm1d(4), nn.Embedding(10, 4))
    with pytest.raises(ModelsafeError, match="no prunable layer"):
        DynamicSparsity(no_layers, torch.optim.SGD(no_layers.parameters(), lr=0.1), 0.5, update_interval=None)
    other = torch.optim.SGD(nn.Linear(3, 3).parameters(), lr=0.1)
    with pytest.raises(ModelsafeError, match="optimizer does not hold the model's parameter"):
        DynamicSparsity(net, other, 0.5, update_interval=None)
    with pytest.raises(UnknownNameError, match="unknown grow rule 'rigl'.*gradient"):
        DynamicSparsity(net, opt, 0.5, update_interval=None, grow="rigl")
    with pytest.raises(UnknownNameError, match="unknown prune rule 'largest'"):
        Strategy("largest", "random")
    engine = DynamicSparsity(net, opt, 0.5, total_steps=10)
    with pytest.raises(UnknownNameError, match="grow rule"):
        engine.propose([("magnitude", "nope")])
    with pytest.raises(ModelsafeError, match="strategy string"):
        engine.propose(["magnitude-gradient"])
    with pytest.raises(ModelsafeError, match="total_steps is needed"):
        DynamicSparsity(net, opt, 0.5)
    with pytest.raises(ModelsafeError, match="need a selector"):
        DynamicSparsity(net, opt, 0.5, total_steps=10, strategies=["magnitude/gradient", "magnitude/random"])
    with pytest.raises(ModelsafeError, match="dense gradient"):
        engine.propose(["magnitude/gradient"])  # no backward pass captured yet
    with pytest.raises(ModelsafeError, match="shape"):
        engine.apply({n: torch.ones(3, dtype=torch.bool) for n in engine.masks})


def test_custom_rules_plug_in_and_their_contract_is_checked(net, tools):
    @register_grow_rule("test-first")
    def first(layer, candidates, k):
        chosen = torch.zeros(candidates.numel(), dtype=torch.bool)
        chosen[candidates.flatten().nonzero().flatten()[:k]] = True
        return chosen.view_as(candidates)

    @register_grow_rule("test-broken")
    def broken(layer, candidates, k):
        return candidates  # far more than k

    try:
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        engine = DynamicSparsity(net, opt, 0.3, total_steps=10, update_interval=1, grow="test-first")
        tools.train_step(net, opt, tools.make_batches(1)[0])
        assert engine.step() is not None and engine.nnz == engine.target_nnz
        with pytest.raises(ModelsafeError, match="must select exactly"):
            engine.propose(["magnitude/test-broken"])
    finally:
        GROW_RULES.unregister("test-first")
        GROW_RULES.unregister("test-broken")
