from pathlib import Path

import numpy as np
import pytest
import torch

from modelsafe.data import load_dataset
from modelsafe.data.files import download, safe_extract, search_dirs
from modelsafe.data.idx import read_idx
from modelsafe.errors import DataNotFoundError, ModelsafeError, UnknownNameError

from ..conftest import write_idx


def test_read_idx_roundtrip_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", arr, compress=False)), arr)
    ints = np.array([1, -2, 300], dtype=">i4")
    assert read_idx(write_idx(tmp_path / "i.gz", ints)).tolist() == [1, -2, 300]


def test_read_idx_rejects_corrupt_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ModelsafeError, match="magic"):
        read_idx(tmp_path / "bad")
    good = write_idx(tmp_path / "trunc", np.zeros((4, 4), np.uint8), compress=False)
    good.write_bytes(good.read_bytes()[:-3])
    with pytest.raises(ModelsafeError, match="expected 16"):
        read_idx(good)


def test_load_fashion_from_root(idx_dir):
    ds = load_dataset("fashion-mnist", root=idx_dir.parent)
    assert ds.info.input_shape == (1, 28, 28) and ds.info.num_classes == 10
    assert ds.train.x.shape == (60, 1, 28, 28) and ds.train.x.dtype == torch.uint8
    assert ds.test.y.tolist() == [i % 10 for i in range(20)]
    x = ds.train.features(torch.arange(5))
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1


def test_uncompressed_files_are_found(idx_dir):
    for f in idx_dir.iterdir():
        f.with_suffix("").write_bytes(__import__("gzip").decompress(f.read_bytes()))
        f.unlink()
    assert len(load_dataset("fashion-mnist", root=idx_dir).train) == 60


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELSAFE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("mnist", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "env" / "mnist") in msg and str(tmp_path / "cache") in msg and "download" in msg
    assert Path(str(tmp_path / "env" / "mnist")) in search_dirs("mnist", tmp_path / "nowhere")


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(UnknownNameError, match="fashion-mnist"):
        load_dataset("fashoin-mnist")


def test_digits_offline():
    ds = load_dataset("digits")
    assert ds.info.input_shape == (1, 8, 8)
    assert len(ds.train) + len(ds.test) == 1797
    assert 0 <= float(ds.train.x.min()) and float(ds.train.x.max()) <= 1


def test_download_verifies_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"modelsafe")
    good = __import__("hashlib").md5(b"modelsafe").hexdigest()
    dest = download(src.as_uri(), tmp_path / "out" / "file.bin", md5=good)
    assert dest.read_bytes() == b"modelsafe"
    with pytest.raises(ModelsafeError, match="checksum mismatch"):
        download(src.as_uri(), tmp_path / "out" / "other.bin", md5="0" * 32)
    assert not (tmp_path / "out" / "other.bin").exists()
    assert not list((tmp_path / "out").glob("*.part"))


def test_safe_extract_refuses_traversal(tmp_path):
    import tarfile
    import zipfile

    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    tar_path = tmp_path / "a.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(evil, arcname="../escape.txt")
    with pytest.raises(ModelsafeError, match="escape.txt"):  # refused by name, before anything is written
        safe_extract(tar_path, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()
    zip_path = tmp_path / "a.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(ModelsafeError, match="leaves"):
        safe_extract(zip_path, tmp_path / "out2")
