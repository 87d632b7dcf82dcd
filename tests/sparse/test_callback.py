import pytest
import torch

from modelsafe.models import create_model
from modelsafe.sparse import SparsityCallback
from modelsafe.training import Callback, fit


def small_cnn(seed: int = 0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_model("cnn", 4, in_channels=1, image_size=8, width=0.5)


class StopAfter(Callback):
    """Simulates a crash at the end of epoch ``epoch`` (0-based), before that epoch is checkpointed."""

    def __init__(self, epoch: int | None):
        self.epoch = epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            raise RuntimeError("simulated crash")


def test_fit_runs_dynamic_sparsity_with_exact_counts(blobs):
    model = small_cnn()
    callback = SparsityCallback.dynamic(0.1, update_interval=5, seed=1)
    history = fit(model, blobs.train, epochs=2, batch_size=32, lr=0.05, callbacks=[callback], progress=False)
    engine = callback.engine
    assert engine.nnz == engine.target_nnz and engine.updates == 3  # 26 steps: updates at 5, 10, 15 (< 20)
    assert history[-1]["density"] == pytest.approx(engine.nnz / engine.masked.total)
    assert history[-1]["itop_rate"] > history[-1]["density"]


def test_an_interrupted_fit_resumes_to_the_same_weights_and_masks(blobs, tmp_path):
    def run(run_dir, stop):
        model = small_cnn()
        callback = SparsityCallback.dynamic(0.1, update_interval=3, grow="momentum", seed=1)
        fit(model, blobs.train, epochs=3, batch_size=32, lr=0.05, callbacks=[callback, StopAfter(stop)],
            run_dir=run_dir, progress=False)
        return model, callback.engine

    reference, ref_engine = run(None, None)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tmp_path, 1)
    resumed, engine = run(tmp_path, None)
    assert engine.step_count == ref_engine.step_count == 39
    for name, value in reference.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    for name, mask in ref_engine.masks.items():
        assert torch.equal(engine.masks[name], mask)
        assert torch.equal(engine.fired[name], ref_engine.fired[name])


def test_fit_runs_gradual_pruning(blobs):
    model = small_cnn()
    callback = SparsityCallback.gradual(0.2, interval=2, distribution="erk")
    history = fit(model, blobs.train, epochs=2, batch_size=32, lr=0.05, callbacks=[callback], progress=False)
    assert callback.engine.nnz == sum(callback.engine.final_counts.values())
    assert history[0]["density"] > history[1]["density"] == pytest.approx(0.2, abs=1e-3)
