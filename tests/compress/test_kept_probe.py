"""Kept probes: the chosen candidate's probed weights and optimizer state continue the live run, and a
candidate's probe defence weight ``~L`` trains it against the (frozen) attackers of the safety tests."""

import copy

import pytest
import torch

from modelsafe.compress.probe import probe, probe_batches
from modelsafe.compress.safecompress import CandidateSpec, SafeCompress, SafeCompressConfig
from modelsafe.data import MembershipSplit
from modelsafe.data.info import TensorData
from modelsafe.errors import ModelsafeError
from modelsafe.sparse.rules import Strategy

from ..conftest import make_blobs
from .test_soundness import FAST, SPEC, started

PAIR = ("magnitude/random", "magnitude/random~5")


@pytest.fixture(scope="module")
def problem():
    data = make_blobs(n_train=700, n_test=100, num_classes=4, size=8, seed=1)
    return data, MembershipSplit.create(data, SPEC, seed=0)


def _mid_run(data, split, keep_probe: bool) -> SafeCompress:
    candidates = PAIR if keep_probe else ("magnitude/random", "magnitude/random#1")  # '~L' needs kept probes
    cfg = SafeCompressConfig(density=0.2, **{**FAST, "update_interval": 1000}, minmax=False, candidates=candidates,
                             keep_probe=keep_probe)
    sc = started(data, split, cfg)
    for group in sc._state.optimizer.param_groups:  # fit() ended at lr 0; probes train at the run's lr mid-run
        group["lr"] = 0.05
    sc.refresh()
    return sc


def test_candidate_spec_parses_seed_multiplier_and_probe_defence():
    spec = CandidateSpec.parse("magnitude/random#2@x2~1.5")
    assert (spec.strategy, spec.multiplier, spec.defence) == (Strategy("magnitude", "random", 2), 2.0, 1.5)
    assert CandidateSpec.parse("magnitude/gradient").defence == 0.0


@pytest.mark.parametrize("keep", [True, False])
def test_the_live_run_continues_from_the_chosen_candidates_probe_only_when_kept(problem, monkeypatch, keep):
    data, split = problem
    sc = _mid_run(data, split, keep)
    seen = {}
    score_all = SafeCompress._score_all

    def spy(self, candidates, batches):
        out = score_all(self, candidates, batches)
        seen["probed"] = out[1]
        return out

    monkeypatch.setattr(SafeCompress, "_score_all", spy)
    model, opt = sc.engine.model, sc._state.optimizer
    if keep:  # a candidate's probe defence is its weight times the tests' terms (none for weight 0)
        x, y = sc.members.x[:16], sc.members.y[:16]
        logits = model(x)
        want = 5.0 * sc.tests[0].defence_loss(model, x, y, logits)
        torch.testing.assert_close(sc._probe_defence(1)(model, x, y, logits), want)
        assert sc._probe_defence(0) is None  # no min-max phase in this run
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sc.update()
    entry = sc.log[-1]
    live = dict(model.named_parameters())
    if not keep:  # the probes only informed the choice: surviving weights are the pre-update ones
        assert seen["probed"] == {}
        masks = sc.engine.masks
        assert all(torch.equal(live[n], before[n] * masks[n]) for n in masks)
        return
    chosen, other = entry["chosen"], 1 - entry["chosen"]
    assert entry["chosen_strategy"].endswith("~5") == (chosen == 1)
    kept_model, kept_opt = seen["probed"][chosen]
    for name, p in kept_model.named_parameters():
        assert torch.equal(live[name], p), name
    assert any(not torch.equal(live[n], p) for n, p in seen["probed"][other][0].named_parameters())
    assert any(not torch.equal(live[n], before[n]) for n in before)
    kept_state = kept_opt.state_dict()["state"]
    for i, p in enumerate(q for g in opt.param_groups for q in g["params"]):
        assert torch.equal(opt.state[p]["momentum_buffer"], kept_state[i]["momentum_buffer"])


def test_a_kept_probe_run_takes_as_many_optimizer_steps_as_one_without(problem, monkeypatch):
    data, split = problem
    live = []
    monkeypatch.setattr(SafeCompress, "before_optimizer_step", lambda self, state: live.append(state.step))
    cfg = SafeCompressConfig(density=0.2, **FAST, minmax=False, candidates=PAIR, keep_probe=True)
    sc = started(data, split, cfg, epochs=3)
    total, probes = sc._state.total_steps, cfg.probe_steps * len(sc.log)
    assert len(sc.log) >= 2 and sc.engine.step_count == total
    assert len(live) == total - probes  # each kept probe's steps replaced as many of the run's own
    for entry in sc.log:  # the steps right after an update are the probe's
        assert not set(range(entry["step"], entry["step"] + cfg.probe_steps)) & set(live)
    with pytest.raises(ModelsafeError, match="probe_steps .* < update_interval"):
        SafeCompressConfig(candidates=PAIR, keep_probe=True, probe_steps=100, update_interval=100)


def test_a_kept_probe_carries_the_min_max_term_of_the_steps_it_replaces(problem):
    data, split = problem
    sc = _mid_run(data, split, True)
    sc.config = SafeCompressConfig(**{**sc.config.__dict__, "minmax": True, "minmax_lambda": 2.0})
    sc.minmax_from = sc._state.step + 1  # the probe's first step replaces a step before the phase, the second one in it
    model = sc.engine.model
    x, y = sc.members.x[:16], sc.members.y[:16]
    logits = model(x)
    one = sc.tests[0].defence_loss(model, x, y, logits)
    plain, defended = sc._probe_defence(0), sc._probe_defence(1)  # candidates '~0' and '~5'
    got = [(plain(model, x, y, logits), defended(model, x, y, logits)) for _ in range(sc.config.probe_steps)]
    torch.testing.assert_close(torch.stack(got[0]), torch.stack([0.0 * one, 5.0 * one]))
    torch.testing.assert_close(torch.stack(got[1]), torch.stack([2.0 * one, 7.0 * one]))  # λ + L in the phase
    sc.config = SafeCompressConfig(**{**sc.config.__dict__, "keep_probe": False, "candidates": ("magnitude/random",
                                                                                                "magnitude/random#1")})
    assert sc._probe_defence(0) is None  # a probe that only informs the choice trains on the task loss alone


def test_a_probe_defence_term_is_minimised_with_the_task_loss():
    # the defence here pushes class 0's logit down; with weight 10 it must beat the plain probe on that
    gen = torch.Generator().manual_seed(0)
    data = TensorData(torch.randn(64, 6, generator=gen), torch.randint(0, 3, (64,), generator=gen))
    model = torch.nn.Linear(6, 3)
    masks = {"weight": torch.rand(3, 6, generator=gen) > 0.3}
    live = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = probe_batches(data, 5, 16, 0)
    outs = {}
    for name, defence in (("plain", None), ("defended", lambda m, x, y, logits: 10.0 * logits[:, 0].mean())):
        out, opt = probe(copy.deepcopy(model), masks, live, data, batches, device=torch.device("cpu"),
                         defence=defence)
        assert torch.equal(out.weight * ~masks["weight"], torch.zeros(3, 6))  # the mask still holds
        assert opt.state[next(iter(out.parameters()))]["momentum_buffer"].abs().sum() > 0
        with torch.no_grad():
            outs[name] = float(out(data.x)[:, 0].mean())
    assert outs["defended"] < outs["plain"] - 0.5


@pytest.mark.parametrize("kw, message", [
    (dict(candidates=PAIR), "set keep_probe=True"),
    (dict(keep_probe=True, select=False, candidates=("magnitude/gradient",), probe_steps=0), "needs select=True"),
    (dict(candidates=("magnitude/gradient", "magnitude/gradient~-1"), keep_probe=True), "finite number >= 0"),
    (dict(candidates=("magnitude/gradient", "magnitude/gradient~x"), keep_probe=True), "prune/grow"),
    (dict(candidates=PAIR, keep_probe=True, tests=("loss",), minmax=False), "learned attacker"),
])
def test_probe_settings_that_cannot_work_are_refused(kw, message):
    with pytest.raises(ModelsafeError, match=message):
        SafeCompressConfig(**kw)


def test_candidates_differing_only_by_their_probe_defence_may_be_selected_between():
    assert SafeCompressConfig(candidates=PAIR, keep_probe=True).candidates == PAIR
