import pytest
import torch

from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model_for
from modelsafe.training import Callback, TrainConfig, augment_batch, evaluate, fit, lr_factor, predict_logits

from .conftest import make_blobs


def model_for(ds, seed=0):
    torch.manual_seed(seed)
    return create_model_for("mlp", ds.info, width=0.25)


def test_fit_learns_and_is_deterministic(blobs):
    a, b = model_for(blobs), model_for(blobs)
    ha = fit(a, blobs.train, epochs=4, lr=0.1, batch_size=32, seed=3, progress=False)
    fit(b, blobs.train, epochs=4, lr=0.1, batch_size=32, seed=3, progress=False)
    assert evaluate(a, blobs.test)["accuracy"] > 0.9
    assert ha[-1]["train_loss"] < ha[0]["train_loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert not a.training


def test_resume_after_interruption_matches_uninterrupted_run(blobs, tmp_path):
    class Stop(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 1:  # second epoch finished, checkpoint not yet written for it
                raise KeyboardInterrupt

    class Counter(Callback):
        def __init__(self):
            self.steps = 0

        def after_optimizer_step(self, state):
            self.steps += 1

        def state_dict(self):
            return {"steps": self.steps}

        def load_state_dict(self, state):
            self.steps = state["steps"]

    kw = dict(epochs=4, lr=0.1, batch_size=32, seed=5, progress=False)
    reference = model_for(blobs)
    ref_hist = fit(reference, blobs.train, **kw)

    interrupted = model_for(blobs)
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, blobs.train, run_dir=tmp_path, callbacks=[Counter(), Stop()], **kw)
    resumed = model_for(blobs, seed=99)  # different init: everything must come from the checkpoint
    counter = Counter()
    hist = fit(resumed, blobs.train, run_dir=tmp_path, callbacks=[counter, Callback()], **kw)
    assert len(hist) == 4 and hist[0] == ref_hist[0]
    assert counter.steps == 4 * 13  # 400 samples / 32 per batch = 13 steps per epoch
    for p, q in zip(reference.state_dict().values(), resumed.state_dict().values()):
        assert torch.allclose(p, q, atol=1e-6)


def test_resume_refuses_different_settings(blobs, tmp_path):
    fit(model_for(blobs), blobs.train, epochs=1, batch_size=64, run_dir=tmp_path, progress=False)
    with pytest.raises(ModelsafeError, match="different training settings"):
        fit(model_for(blobs), blobs.train, epochs=1, batch_size=32, run_dir=tmp_path, progress=False)


def test_callback_loss_hook_changes_training(blobs):
    class Zero(Callback):
        def loss(self, state, inputs, labels, logits, loss):
            return loss * 0.0

    model = model_for(blobs)
    before = [p.clone() for p in model.parameters()]
    fit(model, blobs.train, epochs=1, weight_decay=0.0, callbacks=[Zero()], progress=False)
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")  # all steps replaced
def test_replaced_steps_are_passed_over_but_counted(blobs):
    class Replace(Callback):  # takes steps 4..(4 + n) on the run's behalf, as a kept probe would
        def __init__(self, start, n):
            self.start, self.n, self.live, self.after, self.lrs = start, n, 0, 0, []

        def replaces_step(self, state):
            return self.start <= state.step < self.start + self.n

        def before_optimizer_step(self, state):
            self.live += 1

        def after_optimizer_step(self, state):
            self.after += 1
            self.lrs.append(state.optimizer.param_groups[0]["lr"])

    plain, replaced = Replace(0, 0), Replace(4, 3)
    a, b = model_for(blobs), model_for(blobs)
    fit(a, blobs.train, epochs=2, lr=0.1, batch_size=32, schedule="cosine", seed=3, callbacks=[plain], progress=False)
    fit(b, blobs.train, epochs=2, lr=0.1, batch_size=32, schedule="cosine", seed=3, callbacks=[replaced],
        progress=False)
    assert replaced.after == plain.after and replaced.live == plain.live - 3  # counted, not taken
    assert replaced.lrs == plain.lrs  # the schedule advances through replaced steps
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    everything = Replace(0, 10**6)  # every step replaced: the weights stay, the epoch log has no train loss
    c = model_for(blobs)
    before = [p.clone() for p in c.parameters()]
    history = fit(c, blobs.train, epochs=1, batch_size=32, callbacks=[everything], progress=False)
    assert all(torch.equal(p, q) for p, q in zip(before, c.parameters()))
    assert history[0]["train_loss"] is None and everything.live == 0 and everything.after > 0


@pytest.mark.parametrize("bad, match", [
    (dict(epochs=0), "epochs"), (dict(lr=-1.0), "lr"), (dict(batch_size=0), "batch_size"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(schedule="step"), "schedule"),
    (dict(momentum=1.5), "momentum"), (dict(nesterov=True, optimizer="adam"), "nesterov"),
])
def test_bad_settings_fail_before_training(blobs, bad, match):
    with pytest.raises(ModelsafeError, match=match):
        fit(model_for(blobs), blobs.train, progress=False, **bad)


def test_lr_schedules():
    cos = TrainConfig(schedule="cosine")
    assert lr_factor(cos, 0, 100) == 1.0 and abs(lr_factor(cos, 50, 100) - 0.5) < 1e-9
    ms = TrainConfig(schedule="multistep", milestones=(0.5, 0.75), gamma=0.1)
    assert [round(lr_factor(ms, s, 100), 6) for s in (0, 49, 50, 75)] == [1.0, 1.0, 0.1, 0.01]


def test_augment_crop_flip_keeps_shape_and_content():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 8, 8)
    out = augment_batch(x, "crop-flip", gen)
    assert out.shape == x.shape
    assert not torch.equal(out, x)
    assert torch.equal(augment_batch(x, "none", gen), x)


def test_predict_logits_restores_mode():
    ds = make_blobs()
    model = model_for(ds).train()
    logits = predict_logits(model, ds.test, batch_size=64)
    assert logits.shape == (200, 4) and model.training
