"""The fast-path training settings, checked on CPU: bfloat16 autocast of the training steps (on, within a
tolerance of full precision, refused for DP-SGD) and the ``channels_last`` layout (on, same values)."""

import pytest
import torch
from torch import nn

from modelsafe.adversarial import create_attack
from modelsafe.compress import CompressOptions, get_method
from modelsafe.data import load_dataset
from modelsafe.errors import ModelsafeError
from modelsafe.storage.io import load_weights, save_weights
from modelsafe.training import Callback, TrainConfig, evaluate, fit
from modelsafe.utils import batch_layout, is_channels_last, to_channels_last, use_channels_last
from modelsafe.workflows import init_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


class Spy(Callback):
    """Records the dtype of the logits the loss sees and the layout of the first conv weight at each step."""

    def __init__(self):
        self.logit_dtypes, self.nhwc = set(), set()

    def loss(self, state, inputs, labels, logits, loss):
        self.logit_dtypes.add(logits.dtype)
        self.nhwc.add(is_channels_last(state.model))
        return loss


def trained(digits, **config):
    model, spy = init_model("cnn", digits, 1.0, 0), Spy()
    fit(model, digits.train, TrainConfig(epochs=5, lr=0.05, batch_size=64, **config), callbacks=[spy], seed=0,
        progress=False, device="cpu")
    return model, spy


def test_autocast_runs_the_steps_in_bfloat16_and_learns_as_well(digits):
    full, full_spy = trained(digits)
    half, half_spy = trained(digits, autocast=True)
    assert full_spy.logit_dtypes == {torch.float32} and half_spy.logit_dtypes == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in half.parameters())  # weights stay in full precision
    assert not all(torch.equal(a, b) for a, b in zip(full.parameters(), half.parameters(), strict=True))
    acc = [evaluate(m, digits.test)["accuracy"] for m in (full, half)]
    assert acc[0] > 0.85 and abs(acc[0] - acc[1]) <= 0.03, acc


def test_dp_sgd_refuses_autocast_before_training():
    options = CompressOptions(train=TrainConfig(autocast=True))
    with pytest.raises(ModelsafeError, match="autocast"):
        get_method("dp-sgd").check(options)


def test_channels_last_training_keeps_nhwc_weights_and_equals_the_default_layout(digits, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both runs reduce in the same order as far as the kernels allow
    try:
        plain, plain_spy = trained(digits, channels_last=False)
        nhwc, nhwc_spy = trained(digits, channels_last=True)
    finally:
        torch.set_num_threads(threads)
    assert plain_spy.nhwc == {False} and nhwc_spy.nhwc == {True}
    for a, b in zip(plain.parameters(), nhwc.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    save_weights(tmp_path / "w.safetensors", nhwc)  # NHWC tensors are saved contiguous
    again = load_weights(tmp_path / "w.safetensors", init_model("cnn", digits, 1.0, 1))
    assert all(torch.equal(a, b) for a, b in zip(nhwc.state_dict().values(), again.state_dict().values()))


def test_automatic_layout_is_nhwc_for_conv_nets_on_cuda_only(digits):
    cnn, mlp = init_model("cnn", digits, 1.0, 0), init_model("mlp", digits, 1.0, 0)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert use_channels_last(cnn, cuda) and not use_channels_last(cnn, cpu) and not use_channels_last(mlp, cuda)
    assert not use_channels_last(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv3d(2, 2, 1)), cuda)  # 4-D only
    assert use_channels_last(mlp, cpu, True) and not use_channels_last(cnn, cuda, False)  # forced either way


def test_layout_of_models_and_image_batches(digits):
    cnn = init_model("cnn", digits, 1.0, 0)
    assert not is_channels_last(cnn)
    assert is_channels_last(to_channels_last(cnn))
    x = torch.rand(4, 3, 8, 8)
    assert batch_layout(x, False) is x
    y = batch_layout(x, True)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous() and torch.equal(x, y)
    assert batch_layout(torch.rand(4, 64), True).is_contiguous()  # not an image batch: untouched


def test_an_attack_on_a_channels_last_surrogate_gives_the_same_images(digits):
    model = init_model("cnn", digits, 1.0, 0)
    fit(model, digits.train, epochs=1, lr=0.05, seed=0, progress=False, device="cpu")
    x, y = digits.test.features(torch.arange(64)), digits.test.y[:64]
    plain = create_attack("smi-fgrm", model.eval(), eps=0.1, steps=3, samples=4)(x, y, seed=0)
    nhwc = create_attack("smi-fgrm", to_channels_last(model), eps=0.1, steps=3, samples=4)(x, y, seed=0)
    changed = (plain - nhwc).abs() > 1e-4
    assert float(changed.float().mean()) < 0.01  # rescale binning may flip a rare near-tie, nothing more
