"""SafeCompress soundness: controlled starts, common random numbers in selection, a selection that rejects a
leaking candidate, warm attackers without selection, and the defence term's sign."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modelsafe.compress import CompressOptions, compress
from modelsafe.compress.probe import probe_batches
from modelsafe.compress.safecompress import SafeCompress, SafeCompressConfig, masks_digest
from modelsafe.compress.safety import SafetyData, create_safety_tests
from modelsafe.data import MembershipSplit, SplitSpec
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.sparse import DynamicSparsity
from modelsafe.sparse.engine import Candidate
from modelsafe.sparse.rules import Strategy
from modelsafe.training import Callback, TrainConfig, TrainState, fit
from modelsafe.workflows import init_model

from ..conftest import make_blobs

SPEC = SplitSpec(members=240, validation=60, nonmember_source="train", reference=120, eval_nonmembers=120)
TRAIN = TrainConfig(epochs=2, batch_size=32, lr=0.05)
FAST = dict(update_interval=6, refresh_steps=5, attacker_batch_size=16, probe_steps=2, validation_samples=60,
            minmax_start=0.5, update_end=0.9)
METHODS = ["rigl", "advreg-sparse", "bmia-safecompress", "accuracy-safecompress", "mia-safecompress",
           "mmia-safecompress", "wmia-safecompress", "safecompress-official"]


@pytest.fixture(scope="module")
def problem():
    data = make_blobs(n_train=700, n_test=100, num_classes=4, size=8, seed=1)
    return data, MembershipSplit.create(data, SPEC, seed=0)


ENGINE_INIT = DynamicSparsity.__init__


class Started(Exception):
    """Raised as soon as a method's sparse engine exists: the start state has been recorded."""


def start_state(method, data, split, monkeypatch, seed=3):
    """The masks and masked weights a method starts training from."""
    seen = {}

    def recording(self, model, *args, **kwargs):
        ENGINE_INIT(self, model, *args, **kwargs)
        seen["masks"] = {n: m.clone() for n, m in self.masks.items()}
        seen["weights"] = {n: p.detach().clone() for n, p in model.state_dict().items()}
        raise Started

    monkeypatch.setattr(DynamicSparsity, "__init__", recording)
    options = CompressOptions(density=0.2, train=TRAIN, update_interval=6,
                              extra={"safecompress": {k: v for k, v in FAST.items() if k != "update_interval"}})
    with pytest.raises(Started):
        compress(method, init_model("cnn", data, 0.5, seed), split.data(data, "members"), options, seed=seed,
                 progress=False, dataset=data, split=split)
    return seen


def test_every_method_of_a_seed_starts_from_identical_weights_and_masks(problem, monkeypatch):
    data, split = problem
    states = {m: start_state(m, data, split, monkeypatch) for m in METHODS}
    ref = states["rigl"]
    for method, state in states.items():
        assert state["masks"].keys() == ref["masks"].keys()
        for name in ref["masks"]:
            assert torch.equal(state["masks"][name], ref["masks"][name]), (method, name)
        for name in ref["weights"]:
            assert torch.equal(state["weights"][name], ref["weights"][name]), (method, name)
    # another run seed draws other masks: the equality above is not that of a constant
    other = start_state("bmia-safecompress", data, split, monkeypatch, seed=4)
    assert any(not torch.equal(other["masks"][n], ref["masks"][n]) for n in ref["masks"])


def started(data, split, cfg, epochs=1, model=None):
    """A SafeCompress trainer fitted for ``epochs`` epochs of 8 optimizer steps (of ``model``, default a CNN)."""
    tests = create_safety_tests(cfg.tests, bmia={"batch_size": 16, "refresh_steps": 5},
                                wmia={"batch_size": 16, "refresh_steps": 5}, loss={})
    sc = SafeCompress(cfg, tests, SafetyData.from_split(data, split), split.data(data, "validation"),
                      split.data(data, "members"), seed=0)
    members = split.data(data, "members")
    fit(model or init_model("cnn", data, 0.5, 0), members, TrainConfig(epochs=epochs, batch_size=32, lr=0.05),
        callbacks=[sc], progress=False)
    return sc


def test_identical_candidates_get_identical_rows(problem):
    data, split = problem
    sc = started(data, split, SafeCompressConfig(density=0.2, **{**FAST, "update_interval": 1000}, minmax=False))
    sc.refresh()
    for group in sc._state.optimizer.param_groups:  # fit() ended at lr 0; probes train at the run's lr mid-run
        group["lr"] = 0.05
    candidate = sc.engine.propose([Strategy("magnitude", "random", drop_fraction=0.3)])[0]
    out, _ = sc._choose([candidate, candidate, candidate])
    rows = out["candidates"]
    assert rows[0] == rows[1] == rows[2]
    assert not out["differs_from_most_accurate"] and out["chosen"] == 0
    for stats in out["resolution"]["bmia"].values():
        assert stats["spread"] == 0 and stats["paired_se"] == [0.0, 0.0, 0.0]
    # the same candidate probed on other batches scores differently, so equal rows need common batches
    other = [probe_batches(sc.members, 2, 32, seed) for seed in (1, 2)]
    scores = []
    for batches in other:
        row, _, _ = sc._score(0, candidate, batches)
        scores.append((row["accuracy"], row["tests"]["bmia"]["gap"]))
    assert scores[0] != scores[1]


def test_candidates_of_a_model_with_dropout_are_probed_with_one_random_stream(problem):
    data, split = problem
    net = torch.nn.Sequential(init_model("cnn", data, 0.5, 0), torch.nn.Dropout(0.5))  # dropout on the logits
    sc = started(data, split, SafeCompressConfig(density=0.2, **{**FAST, "update_interval": 1000}, minmax=False),
                 model=net)
    for group in sc._state.optimizer.param_groups:
        group["lr"] = 0.05
    candidate = sc.engine.propose([Strategy("magnitude", "random", drop_fraction=0.3)])[0]
    before = torch.random.get_rng_state()
    rows = sc._choose([candidate, candidate])[0]["candidates"]
    assert rows[0] == rows[1]  # the same dropout draws for both probes, whatever their order
    assert torch.equal(torch.random.get_rng_state(), before)  # and the run's own stream is left as it was


def test_applied_mask_is_the_chosen_candidates(problem):
    data, split = problem
    cfg = SafeCompressConfig(density=0.2, **FAST, minmax=False)
    sc = started(data, split, cfg, epochs=5)
    assert sc.log
    for entry in sc.log:
        chosen = entry["candidates"][entry["chosen"]]
        assert entry["applied_masks_sha"] == chosen["masks_sha"]
        assert entry["most_accurate"] == max(range(len(entry["candidates"])),
                                             key=lambda i: (entry["candidates"][i]["accuracy"], -i))
    assert masks_digest(sc.engine.masks) == sc.log[-1]["applied_masks_sha"]


class Memoriser(nn.Module):
    """g: a linear classifier; m: a lookup that fires only on the stored (member) inputs and pushes their
    labels' logits up. Output g(x) + m(x)."""

    def __init__(self, members: TensorData, num_classes: int):
        super().__init__()
        x = members.x.flatten(1)
        self.g = nn.Linear(x.shape[1], num_classes)
        self.m1 = nn.Linear(x.shape[1], len(members))
        self.m2 = nn.Linear(len(members), num_classes, bias=False)
        with torch.no_grad():
            norms = x.norm(dim=1, keepdim=True)
            self.m1.weight.copy_(x / norms)
            self.m1.bias.copy_(-0.97 * norms.squeeze(1))
            self.m2.weight.copy_(200.0 * F.one_hot(members.y, num_classes).T.float())

    def forward(self, x):
        x = x.flatten(1)
        return self.g(x) + self.m2(torch.relu(self.m1(x)))


@pytest.mark.parametrize("risk", ["advantage", *(pytest.param(r, marks=pytest.mark.slow) for r in ("auc", "gap"))])
def test_selection_rejects_a_candidate_that_keeps_a_memorising_subnetwork(problem, risk):
    data, split = problem
    members = split.data(data, "members")
    model = Memoriser(members, data.info.num_classes)
    torch.manual_seed(0)
    opt = torch.optim.SGD(model.g.parameters(), lr=0.05)
    for _ in range(300):  # the generalising part
        idx = torch.randint(len(members), (64,))
        opt.zero_grad()
        F.cross_entropy(model.g(members.x[idx].flatten(1)), members.y[idx]).backward()
        opt.step()
    cfg = SafeCompressConfig(density=1.0, tests=("bmia",), candidates=("magnitude/random", "magnitude/gradient"),
                             probe_steps=1, minmax=False, risk=risk, validation_samples=60, refresh_steps=300,
                             attacker_batch_size=32)
    sc = SafeCompress(cfg, create_safety_tests(["bmia"], bmia={"refresh_steps": 300, "batch_size": 32, "risk": risk}),
                      SafetyData.from_split(data, split, holdout_fraction=0.5), split.data(data, "validation"),
                      members)
    live = torch.optim.SGD(model.parameters(), lr=1e-9)
    sc.on_fit_start(TrainState(model, live, TrainConfig(batch_size=32), torch.device("cpu"), 100, 10))
    sc.refresh()  # the attacker learns the live (memorising) model
    ones = {n: torch.ones_like(m) for n, m in sc.engine.masks.items()}
    g_cut = torch.rand(ones["g.weight"].shape, generator=torch.Generator().manual_seed(0)) > 0.5
    safe = {**ones, "m2.weight": torch.zeros_like(ones["m2.weight"]), "g.weight": g_cut}  # memoriser off, g halved
    leaky = dict(ones)  # memoriser on, g whole
    zero = {n: torch.zeros_like(m) for n, m in ones.items()}
    candidates = [Candidate(Strategy("magnitude", "random"), 0, 0.0, masks, zero) for masks in (leaky, safe)]
    out, _ = sc._choose(candidates)
    rows = out["candidates"]
    assert rows[0]["accuracy"] >= rows[1]["accuracy"]  # the leaking candidate is at least as accurate ...
    assert rows[0]["risks"]["bmia"] > rows[1]["risks"]["bmia"] + 0.2  # ... and the test sees its leak
    assert out["chosen"] == 1 and out["most_accurate"] == 0 and out["differs_from_most_accurate"]


def test_attackers_are_warm_when_minmax_starts_without_selection(problem):
    data, split = problem
    cfg = SafeCompressConfig(density=0.2, candidates=("magnitude/gradient",), select=False, probe_steps=0,
                             **{k: v for k, v in FAST.items() if k != "probe_steps"})
    tests = create_safety_tests(["bmia"], bmia={"batch_size": 16, "refresh_steps": 5})
    sc = SafeCompress(cfg, tests, SafetyData.from_split(data, split), split.data(data, "validation"),
                      split.data(data, "members"))
    seen = {}

    class Watch(Callback):
        def loss(self, state, inputs, labels, logits, loss):
            if sc.minmax_active(state) and "refreshes" not in seen:
                seen["refreshes"], seen["step"] = tests[0].refreshes, state.step
            return loss

    fit(init_model("cnn", data, 0.5, 0), split.data(data, "members"), TRAIN, callbacks=[Watch(), sc],
        progress=False)
    assert seen["step"] >= 6 and seen["refreshes"] == seen["step"] // cfg.update_interval > 0


def test_defence_term_opposes_the_attackers_own_objective(problem):
    data, split = problem
    members = split.data(data, "members")
    model = init_model("cnn", data, 0.5, 0)
    fit(model, members, TrainConfig(epochs=3, batch_size=32, lr=0.05), progress=False)
    test = create_safety_tests(["bmia"], bmia={"batch_size": 32, "refresh_steps": 200})[0]
    test.prepare(model, SafetyData.from_split(data, split))
    test.refresh(model)
    x, y = members.x[:64], members.y[:64]
    logits = model(x).detach().requires_grad_(True)
    term = test.defence_loss(model, x, y, logits)
    (grad,) = torch.autograd.grad(term, logits)
    attack = test.attack

    def attacker_loss(out):  # the attacker's BCE on these members, labelled members
        with torch.no_grad():
            return float(F.binary_cross_entropy_with_logits(attack.membership_logits(model, x, y, out),
                                                            torch.ones(len(x))))

    # a defender step (down the defence term) must raise the attacker's own loss; a step up must lower it
    assert attacker_loss(logits - 0.5 * grad) > attacker_loss(logits) > attacker_loss(logits + 0.5 * grad)


@pytest.mark.parametrize("kw, message", [
    (dict(objective_weight=-0.5), "objective weight"),
    (dict(candidates=("magnitude/gradient",)), "at least two candidate strategies"),
    (dict(candidates=("magnitude/gradient", "magnitude/gradient#3")), "always give the same mask"),
    (dict(probe_steps=0), "probe_steps >= 1"),
    (dict(tests=("loss",)), "needs a learned attacker"),
])
def test_settings_that_cannot_select_are_refused(kw, message):
    with pytest.raises(ModelsafeError, match=message):
        SafeCompressConfig(**kw)


def test_probing_leaves_the_live_model_and_optimizer_untouched(problem):
    data, split = problem
    sc = started(data, split, SafeCompressConfig(density=0.2, **{**FAST, "update_interval": 1000}, minmax=False))
    opt = sc._state.optimizer
    for group in opt.param_groups:
        group["lr"] = 0.05
    before = {k: v.clone() for k, v in sc.engine.model.state_dict().items()}
    momentum = [opt.state[p]["momentum_buffer"].clone() for g in opt.param_groups for p in g["params"]]
    candidate = sc.engine.propose([Strategy("magnitude", "random", drop_fraction=0.3)])[0]
    sc._score(0, candidate, probe_batches(sc.members, 3, 32, 0))
    assert all(torch.equal(v, sc.engine.model.state_dict()[k]) for k, v in before.items())
    after = [opt.state[p]["momentum_buffer"] for g in opt.param_groups for p in g["params"]]
    assert all(torch.equal(a, b) for a, b in zip(momentum, after, strict=True))


def test_privacy_aware_candidate_prunes_differently(problem):
    data, split = problem
    cfg = SafeCompressConfig(density=0.2, **FAST, minmax=False,
                             candidates=("magnitude/gradient", "magnitude-gap/gradient"))
    sc = started(data, split, cfg, epochs=3)
    assert sc.log and any(e["candidates"][0]["masks_sha"] != e["candidates"][1]["masks_sha"] for e in sc.log)
    grads = sc._gap_gradient()
    assert set(grads) == set(sc.engine.masks) and all(torch.isfinite(g).all() for g in grads.values())
