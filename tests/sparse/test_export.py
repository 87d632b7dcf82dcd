import math

import pytest
import torch
from safetensors.torch import save_file

from modelsafe.errors import ModelsafeError
from modelsafe.models import create_model
from modelsafe.sparse import DynamicSparsity, export_sparse, load_sparse
from modelsafe.storage.io import save_weights


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def test_round_trip_is_bit_exact_for_every_kind_of_tensor(tmp_path):
    gen = torch.Generator().manual_seed(0)
    sparse = torch.randn(64, 3, 3, 3, generator=gen) * (torch.rand(64, 3, 3, 3, generator=gen) < 0.1)
    sparse[0, 0, 0, 0] = -0.0  # zeros of either sign are left out and come back as +0.0
    sparse[1, 0, 0, 0] = float("nan")  # kept bit for bit, like every non-zero
    very_sparse = torch.zeros(3, 5000)
    very_sparse[1, 4321] = 2.5
    state = {
        "sparse": sparse, "very_sparse": very_sparse, "dense": torch.randn(10, 10, generator=gen),
        "half": (torch.randn(40, 40, generator=gen) * (torch.rand(40, 40, generator=gen) < 0.05)).half(),
        "bf16": (torch.randn(300, generator=gen) * (torch.rand(300, generator=gen) < 0.05)).bfloat16(),
        "double": torch.zeros(4, 4, dtype=torch.float64), "count": torch.tensor(7), "scalar": torch.tensor(0.0),
        "empty": torch.zeros(0, 3), "flags": torch.tensor([True, False]), "ints": torch.arange(6).view(2, 3),
    }
    report = export_sparse(state, tmp_path / "w.safetensors")
    loaded = load_sparse(tmp_path / "w.safetensors")
    assert loaded.keys() == state.keys()
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        expected = tensor.masked_fill(tensor == 0, 0.0) if tensor.is_floating_point() else tensor
        assert torch.equal(bits(loaded[name]), bits(expected.contiguous())), name
    assert report.layouts["very_sparse"] == "csr" and report.layouts["dense"] == "dense"
    assert report.layouts["sparse"] == "bitmask" and report.layouts["double"] == "bitmask"
    assert report.sparse_bytes == (tmp_path / "w.safetensors").stat().st_size < report.dense_bytes


def test_each_layout_is_the_smallest_of_the_three(tmp_path):
    gen = torch.Generator().manual_seed(1)
    for density in (0.001, 0.02, 0.1, 0.5, 0.95):
        t = torch.randn(128, 256, generator=gen) * (torch.rand(128, 256, generator=gen) < density)
        report = export_sparse({"w": t}, tmp_path / "one.safetensors")
        nnz = int((t != 0).sum())
        # 256 columns: int16 column indices; row pointers int16 up to 32,767 non-zeros
        sizes = {"dense": t.numel() * 4, "bitmask": math.ceil(t.numel() / 8) + 4 * nnz,
                 "csr": 129 * (2 if nnz <= 32767 else 4) + nnz * (2 + 4)}
        assert report.layouts["w"] == min(sizes, key=sizes.get)
        assert torch.equal(load_sparse(tmp_path / "one.safetensors")["w"], t)


def test_a_trained_sparse_model_round_trips_and_is_8x_smaller_at_density_005(tmp_path):
    torch.manual_seed(0)
    model = create_model("cnn", 10, in_channels=1, image_size=28)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = DynamicSparsity(model, opt, 0.05, update_interval=None)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        engine.step()
    engine.remove()
    report = export_sparse(model, tmp_path / "sparse.safetensors")
    dense_file = save_weights(tmp_path / "dense.safetensors", model)
    assert report.dense_bytes == dense_file.stat().st_size
    assert report.ratio >= 8.0, report
    restored = create_model("cnn", 10, in_channels=1, image_size=28)
    restored.load_state_dict(load_sparse(tmp_path / "sparse.safetensors"))
    assert torch.equal(restored(x), model(x))


def test_plain_files_load_and_bad_files_are_reported(tmp_path):
    save_file({"a": torch.ones(3)}, tmp_path / "plain.safetensors")
    assert torch.equal(load_sparse(tmp_path / "plain.safetensors")["a"], torch.ones(3))
    with pytest.raises(ModelsafeError, match="no sparse weights file"):
        load_sparse(tmp_path / "missing.safetensors")
    with pytest.raises(ModelsafeError, match="clash"):
        export_sparse({"w.__values__": torch.ones(2)}, tmp_path / "x.safetensors")
