"""Compute accounting: forward and backward passes per image, counted where the surrogate runs."""

import pytest
import torch

from modelsafe.adversarial import ComputeCount, Ensemble, create_attack, transfer_matrix
from modelsafe.data import TensorData

from .conftest import CountingModel


@pytest.mark.parametrize("name,overrides,per_step", [
    ("mi-fgsm", {}, 1),                    # T gradients
    ("smi-fgrm", {"samples": 12}, 13),     # T (N + 1)
    ("si-ni-fgsm", {"si_copies": 5}, 5),   # T copies
    ("vmi-fgsm", {"samples": 20}, 21),     # T (N + 1)
])
def test_counts_per_image_for_one_model(cnn, images, name, overrides, per_step):
    counted = CountingModel(cnn)
    attack = create_attack(name, counted, eps=0.1, steps=10, chunk_size=5, **overrides)
    attack(images)
    c = attack.last_compute
    assert c.images == images.shape[0]
    assert c.gradient_evaluations_per_image == 10 * per_step
    assert c.backward_per_image == 10 * per_step
    assert c.forward_per_image == 10 * per_step + 1  # + the clean prediction
    assert c.forward == counted.rows                   # the same rows the model saw


@pytest.mark.parametrize("memory_saving,forward", [(False, 2 + 2 * 10), (True, 2 + 4 * 10)])
def test_counts_per_image_for_an_ensemble_of_two(cnn, mlp, images, memory_saving, forward):
    ens = Ensemble([cnn, mlp], memory_saving=memory_saving)
    attack = create_attack("mi-fgsm", ens, eps=0.1, steps=10)
    attack(images)
    c = attack.last_compute
    assert c.gradient_evaluations_per_image == 10   # one gradient of the ensemble's loss per step
    assert c.backward_per_image == 20               # back-propagated through both members
    assert c.forward_per_image == forward           # memory saving: one extra forward per member and step


def test_counts_accumulate_over_calls_and_ignore_chunk_size(cnn, images):
    attack = create_attack("smi-fgrm", cnn, eps=0.1, steps=2, samples=3, chunk_size=7)
    attack(images)
    attack(images[:2])
    assert attack.last_compute == ComputeCount(images=2, forward=2 * 9, backward=2 * 8, gradient_evaluations=2 * 8)
    assert attack.compute == ComputeCount(images=8, forward=8 * 9, backward=8 * 8, gradient_evaluations=8 * 8)
    assert attack.forward_rows == 8 * 8
    other = create_attack("smi-fgrm", cnn, eps=0.1, steps=2, samples=3, chunk_size=1000)
    other(images)
    assert other.last_compute.per_image() == {"forward_per_image": 9.0, "backward_per_image": 8.0,
                                              "gradient_evaluations_per_image": 8.0}
    assert attack(images[:0]).shape[0] == 0 and attack.last_compute == ComputeCount()


def test_matrix_reports_compute_per_image(cnn, mlp, images, labels):
    result = transfer_matrix(["fgsm", "mi-fgsm", "smi-fgrm"], {"cnn": cnn}, {"mlp": mlp},
                             TensorData((images * 255).byte(), labels), eps=0.1, steps=3, batch_size=4,
                             progress=False)
    rows = {r["attack"]: r for r in result.attacks}
    assert rows["fgsm"]["gradient_evaluations_per_image"] == 1
    assert rows["mi-fgsm"]["gradient_evaluations_per_image"] == 3
    assert rows["smi-fgrm"]["gradient_evaluations_per_image"] == 3 * 13
    assert rows["smi-fgrm"]["backward_per_image"] == 3 * 13
    assert rows["smi-fgrm"]["forward_per_image"] == 3 * 13 + 1


def test_memory_saving_ensemble_with_scale_copies_equals_joint(cnn, mlp, images):
    joint = create_attack("mi-fgsm-ct", Ensemble([cnn, mlp]), eps=0.1, steps=2, di_prob=1.0)(images)
    lean = create_attack("mi-fgsm-ct", Ensemble([cnn, mlp], memory_saving=True), eps=0.1, steps=2,
                         di_prob=1.0)(images)
    assert (joint - lean).abs().max() < 1e-5


class RowsPerCall(torch.nn.Module):
    """Records the rows of every forward call that computes gradients (not the clean prediction)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, []

    def forward(self, x):
        if torch.is_grad_enabled():
            self.rows.append(x.shape[0])
        return self.model(x)


@pytest.mark.parametrize("name,batch,overrides,rows", [
    ("mi-fgsm", 120, {}, [50, 50, 20]),                    # one view: 50 images per call on the CPU
    ("smi-fgrm", 30, {"samples": 2}, [50, 40]),             # 3 points x 30 images, still 50 per call
    ("bsr", 30, {"copies": 3}, [60, 30]),                   # several views: whole views of the batch (2 per call)
    ("bsr", 70, {"copies": 2}, [70, 70]),                   # one whole view per call
    ("bsr", 30, {"copies": 3, "chunk_size": 7}, [7] * 12 + [6]),  # an explicit chunk_size wins
])
def test_rows_per_model_call_on_the_cpu(cnn, name, batch, overrides, rows):
    spy = RowsPerCall(cnn)
    x = torch.rand(batch, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    create_attack(name, spy, eps=0.1, steps=1, **overrides)(x, torch.zeros(batch, dtype=torch.long))
    assert spy.rows == rows
