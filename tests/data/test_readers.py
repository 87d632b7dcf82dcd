"""Dataset readers on small files written here in the real distribution formats (nothing is downloaded)."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from modelsafe.data import load_dataset
from modelsafe.data.cifar import read_batch
from modelsafe.data.text import Vocabulary, build_vocabulary, tokenize
from modelsafe.errors import DataNotFoundError, ModelsafeError


@pytest.fixture(autouse=True)
def isolated_search_dirs(tmp_path, monkeypatch):
    """Only ``root`` and a private cache are searched, so files on the machine never leak into a test."""
    monkeypatch.setenv("MODELSAFE_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def make_tar(path: Path, source: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return path


def make_evil_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------------------------------------------- CIFAR


class Py2Pickler(pickle._Pickler):
    """Writes strings the way Python 2's cPickle did (BINSTRING opcodes), as in the official CIFAR files."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def write_py2_pickle(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        Py2Pickler(fh, protocol=2).dump(obj)


def cifar_images(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar10_dir(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    d = tmp_path / "src" / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        write_py2_pickle(d / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                                 "labels": [(i + j) % 10 for j in range(4)],
                                                 "data": cifar_images(rng, 4),
                                                 "filenames": [f"img_{i}_{j}.png" for j in range(4)]})
    write_py2_pickle(d / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": list(range(6)),
                                        "data": cifar_images(rng, 6), "filenames": ["t.png"] * 6})
    write_py2_pickle(d / "batches.meta", {"label_names": [f"class{i}" for i in range(10)],
                                          "num_cases_per_batch": 4, "num_vis": 3072})
    return d


def test_cifar10_from_python2_pickles(cifar10_dir):
    ds = load_dataset("cifar10", root=cifar10_dir.parent)
    assert ds.info.num_classes == 10 and ds.info.input_shape == (3, 32, 32)
    assert ds.info.classes == tuple(f"class{i}" for i in range(10))
    assert ds.train.x.shape == (20, 3, 32, 32) and ds.train.x.dtype == torch.uint8
    assert ds.train.y.tolist()[:8] == [1, 2, 3, 4, 2, 3, 4, 5]
    assert ds.test.y.tolist() == list(range(6))
    raw = read_batch(cifar10_dir / "data_batch_1")["data"]
    # row layout: 1024 red values, then green, then blue, each 32x32 row-major
    assert torch.equal(ds.train.x[0, 1], torch.from_numpy(raw[0, 1024:2048].reshape(32, 32)))


def test_cifar10_from_tar_gz_is_extracted_into_the_cache(cifar10_dir, tmp_path):
    root = tmp_path / "archives"
    root.mkdir()
    make_tar(root / "cifar-10-python.tar.gz", cifar10_dir, "cifar-10-batches-py")
    ds = load_dataset("cifar10", root=root)
    assert len(ds.train) == 20
    assert (tmp_path / "cache" / "modelsafe" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert not list((tmp_path / "cache" / "modelsafe" / "cifar10").glob(".extracting-*"))


def test_cifar100_fine_labels_and_python3_pickles(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    for split, n in (("train", 7), ("test", 3)):
        batch = {b"filenames": [b"x.png"] * n, b"batch_label": b"b", b"fine_labels": [99 - i for i in range(n)],
                 b"coarse_labels": [0] * n, b"data": cifar_images(rng, n)}
        (d / split).write_bytes(pickle.dumps(batch, protocol=4))  # re-saved by Python 3: bytes keys
    write_py2_pickle(d / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                                  "coarse_label_names": [f"c{i}" for i in range(20)]})
    ds = load_dataset("cifar100", root=tmp_path)
    assert ds.info.num_classes == 100 and ds.info.classes[99] == "f99"
    assert ds.train.y.tolist() == [99, 98, 97, 96, 95, 94, 93] and len(ds.test) == 3


def test_cifar_pickle_cannot_run_code(cifar10_dir, tmp_path):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(target),))

    (cifar10_dir / "data_batch_3").write_bytes(pickle.dumps({"data": Evil(), "labels": []}))
    with pytest.raises(ModelsafeError, match="refusing to load global"):
        load_dataset("cifar10", root=cifar10_dir.parent)
    assert not target.exists()


def test_cifar_corrupt_and_malformed_batches(cifar10_dir):
    good = (cifar10_dir / "test_batch").read_bytes()
    (cifar10_dir / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelsafeError, match="not a readable CIFAR pickle"):
        load_dataset("cifar10", root=cifar10_dir.parent)
    write_py2_pickle(cifar10_dir / "test_batch", {"labels": [0, 1], "data": np.zeros((2, 100), np.uint8)})
    with pytest.raises(ModelsafeError, match=r"uint8 \(N, 3072\)"):
        load_dataset("cifar10", root=cifar10_dir.parent)
    write_py2_pickle(cifar10_dir / "test_batch", {"labels": [0, 10], "data": np.zeros((2, 3072), np.uint8)})
    with pytest.raises(ModelsafeError, match=r"labels must lie in \[0, 10\)"):
        load_dataset("cifar10", root=cifar10_dir.parent)


def test_cifar_missing_lists_where_it_looked(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_dataset("cifar10", root=tmp_path / "nowhere")
    msg = str(err.value)
    assert "cifar-10-python.tar.gz" in msg and "data_batch_1" in msg and "download=True" in msg
    assert str(tmp_path / "nowhere" / "cifar10") in msg and str(tmp_path / "cache") in msg


def test_archive_path_traversal_is_refused(tmp_path):
    root = tmp_path / "archives"
    root.mkdir()
    make_evil_tar(root / "cifar-10-python.tar.gz")
    with pytest.raises(ModelsafeError, match="cannot extract"):
        load_dataset("cifar10", root=root)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_corrupt_archive_is_reported(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(ModelsafeError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", root=tmp_path)


# ---------------------------------------------------------------------------------------------- tabular


def binary_rows(rng, n, f):
    return rng.integers(0, 2, (n, f))


def write_purchase(path: Path, n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x, y = binary_rows(rng, n, 600), rng.integers(1, 101, n)
    y[:2] = (1, 100)
    path.write_text("\n".join(f"{label}," + ",".join(map(str, row)) for label, row in zip(y, x)) + "\n")
    return x, y


def test_purchase100_seeded_split(tmp_path):
    x, y = write_purchase(tmp_path / "dataset_purchase")
    ds = load_dataset("purchase100", root=tmp_path)
    assert ds.info.kind == "tabular" and ds.info.input_shape == (600,) and ds.info.num_classes == 100
    assert len(ds.train) == 24 and len(ds.test) == 6 and ds.train.x.dtype == torch.float32
    pool = ds.pool()
    rows = {tuple(r) for r in x.tolist()}
    assert all(tuple(int(v) for v in r) in rows for r in pool.x.tolist())
    assert sorted(pool.y.tolist()) == sorted((y - 1).tolist()) and pool.y.min() >= 0 and pool.y.max() <= 99
    split = ds.extras["split"]
    assert split["seed"] == 0 and split["test_size"] == 6 and len(split["test_rows_sha256"]) == 64
    again = load_dataset("purchase100", root=tmp_path)
    assert torch.equal(again.test.x, ds.test.x) and again.extras["split"] == split
    other = load_dataset("purchase100", root=tmp_path, seed=1, test_fraction=0.5)
    assert len(other.test) == 15 and other.extras["split"]["test_rows_sha256"] != split["test_rows_sha256"]


def test_purchase100_from_tgz(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_purchase(src / "dataset_purchase", n=10)
    root = tmp_path / "archives"
    root.mkdir()
    make_tar(root / "dataset_purchase.tgz", src / "dataset_purchase", "dataset_purchase")
    assert len(load_dataset("purchase100", root=root).pool()) == 10


def test_texas100_files_and_tgz(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    (src / "texas" / "100").mkdir(parents=True)
    x, y = binary_rows(rng, 12, 6169), rng.integers(1, 101, 12)
    (src / "texas/100/feats").write_text("\n".join(",".join(map(str, r)) for r in x) + "\n")
    (src / "texas/100/labels").write_text("\n".join(map(str, y)) + "\n")
    ds = load_dataset("texas100", root=src, test_fraction=0.25)
    assert ds.info.input_shape == (6169,) and len(ds.train) == 9 and len(ds.test) == 3
    test_rows = [int(i) for i in np.flatnonzero([tuple(r) in {tuple(map(int, t)) for t in ds.test.x.tolist()}
                                                 for r in x.tolist()])]
    assert sorted(ds.test.y.tolist()) == sorted((y[test_rows] - 1).tolist())
    root = tmp_path / "archives"
    root.mkdir()
    make_tar(root / "dataset_texas.tgz", src / "texas", "texas")
    assert len(load_dataset("texas100", root=root).pool()) == 12


def test_tabular_bad_input(tmp_path):
    path = tmp_path / "dataset_purchase"
    path.write_text("1," + ",".join(["0"] * 599) + "\n")
    with pytest.raises(ModelsafeError, match="expected 600 features"):
        load_dataset("purchase100", root=tmp_path)
    path.write_text("0," + ",".join(["1"] * 600) + "\n")
    with pytest.raises(ModelsafeError, match="labels must be integers 1..100"):
        load_dataset("purchase100", root=tmp_path)
    path.write_text("3," + ",".join(["x"] * 600) + "\n")
    with pytest.raises(ModelsafeError, match="not a comma-separated table"):
        load_dataset("purchase100", root=tmp_path)
    (tmp_path / "texas" / "100").mkdir(parents=True)
    (tmp_path / "texas/100/feats").write_text(",".join(["1"] * 6169) + "\n")
    (tmp_path / "texas/100/labels").write_text("1\n2\n")
    with pytest.raises(ModelsafeError, match="1 feature rows but 2 labels"):
        load_dataset("texas100", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="dataset_texas.tgz"):
        load_dataset("texas100", root=tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------- Tiny-ImageNet

WNIDS = ["n03000000", "n01000000", "n02000000"]  # wnids.txt order; class index follows the sorted order
COLOURS = {"n01000000": (250, 10, 10), "n02000000": (10, 250, 10), "n03000000": (10, 10, 250)}


def write_jpeg(path: Path, colour, size=(64, 64), mode="RGB"):
    from PIL import Image

    img = Image.new("RGB", size, colour)
    (img.convert("L") if mode == "L" else img).save(path, format="JPEG", quality=95)


@pytest.fixture
def tiny_dir(tmp_path) -> Path:
    d = tmp_path / "src" / "tiny-imagenet-200"
    (d / "val" / "images").mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (d / "words.txt").write_text("n01000000\tred thing, crimson\nn02000000\tgreen thing\nn09999999\tother\n")
    for wnid in WNIDS:
        images = d / "train" / wnid / "images"
        images.mkdir(parents=True)
        (d / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(3):
            write_jpeg(images / f"{wnid}_{i}.JPEG", COLOURS[wnid], mode="L" if (wnid, i) == (WNIDS[0], 2) else "RGB")
    lines = []
    for i, wnid in enumerate(["n02000000", "n03000000", "n01000000", "n02000000"]):
        write_jpeg(d / "val" / "images" / f"val_{i}.JPEG", COLOURS[wnid])
        lines.append(f"val_{i}.JPEG\t{wnid}\t0\t0\t63\t63")
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return d


def test_tiny_imagenet_labels_follow_val_annotations(tiny_dir):
    ds = load_dataset("tiny-imagenet", root=tiny_dir.parent, progress=False)
    assert ds.info.num_classes == 3 and ds.info.input_shape == (3, 64, 64)
    assert ds.info.classes == ("red thing, crimson", "green thing", "n03000000")
    assert ds.extras["wnids"] == ("n01000000", "n02000000", "n03000000")
    assert ds.train.x.shape == (9, 3, 64, 64) and ds.train.y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.test.y.tolist() == [1, 2, 0, 1]
    # each image's dominant channel is its class colour (JPEG is lossy; grey images become 3 equal channels)
    dominant = ds.test.x.float().mean(dim=(2, 3)).argmax(1)
    assert dominant.tolist() == ds.test.y.tolist()
    grey = ds.train.x[8].float()
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    assert len(ds.info.mean) == 3 and all(s > 0 for s in ds.info.std)


def test_tiny_imagenet_from_zip(tiny_dir, tmp_path):
    root = tmp_path / "archives"
    root.mkdir()
    with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as zf:
        for p in tiny_dir.rglob("*"):
            zf.write(p, Path("tiny-imagenet-200") / p.relative_to(tiny_dir))
    ds = load_dataset("tiny-imagenet", root=root, progress=False)
    assert len(ds.train) == 9 and len(ds.test) == 4


def test_tiny_imagenet_zip_traversal_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "tiny-imagenet-200.zip", "w") as zf:
        zf.writestr("../../outside.txt", "pwned")
    with pytest.raises(ModelsafeError, match="leaves"):
        load_dataset("tiny-imagenet", root=tmp_path, progress=False)
    assert not list(tmp_path.parent.rglob("outside.txt"))


def test_tiny_imagenet_bad_input(tiny_dir):
    ann = tiny_dir / "val" / "val_annotations.txt"
    good = ann.read_text()
    ann.write_text(good + "val_0.JPEG\tn07777777\t0\t0\t1\t1\n")
    with pytest.raises(ModelsafeError, match="not in wnids.txt"):
        load_dataset("tiny-imagenet", root=tiny_dir.parent, progress=False)
    ann.write_text(good + "val_9.JPEG\tn01000000\t0\t0\t1\t1\n")
    with pytest.raises(ModelsafeError, match="does not exist"):
        load_dataset("tiny-imagenet", root=tiny_dir.parent, progress=False)
    ann.write_text(good)
    write_jpeg(tiny_dir / "val" / "images" / "val_1.JPEG", (0, 0, 0), size=(32, 32))
    with pytest.raises(ModelsafeError, match="val_1.JPEG is 32x32, expected 64x64"):
        load_dataset("tiny-imagenet", root=tiny_dir.parent, progress=False)
    (tiny_dir / "val" / "images" / "val_1.JPEG").write_bytes(b"not a jpeg")
    with pytest.raises(ModelsafeError, match="cannot read image"):
        load_dataset("tiny-imagenet", root=tiny_dir.parent, progress=False)


# ---------------------------------------------------------------------------------- imagenet-compatible


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def test_imagenet_compatible_nips2017_layout(tmp_path):
    rng = np.random.default_rng(3)
    (tmp_path / "images").mkdir()
    ids = ["0c7ac4a8c9dfa802", "1ae3b2a6d36e8c13", "2f3c1e6a9b0d4e57"]
    arrays = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8) for _ in ids]
    for image_id, arr in zip(ids, arrays):
        write_png(tmp_path / "images" / f"{image_id}.png", arr)
    with open(tmp_path / "images.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ImageId", "URL", "x1", "y1", "x2", "y2", "TrueLabel", "TargetClass", "OriginalLandingURL",
                    "License", "Author", "AuthorProfileURL"])
        for image_id, (true, target) in zip(ids, [(1, 1000), (306, 45), (1000, 2)]):
            w.writerow([image_id, "u", 0, 0, 1, 1, true, target, "l", "cc", "a", "p"])
    ds = load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    assert len(ds.train) == 0 and ds.train.x.shape == (0, 3, 40, 40) and len(ds.test) == 3
    assert ds.info.num_classes == 1000 and ds.info.input_shape == (3, 40, 40)
    assert ds.test.y.tolist() == [0, 305, 999]  # 1001-class labels shifted by the default offset -1
    assert ds.extras["target_labels"].tolist() == [999, 44, 1] and ds.extras["label_offset"] == -1
    assert ds.extras["image_ids"] == tuple(ids)
    assert torch.equal(ds.test.x[1], torch.from_numpy(arrays[1]).permute(2, 0, 1))  # PNG is lossless
    assert len(ds.pool()) == 3
    with pytest.raises(ModelsafeError, match="label_offset=-1"):
        load_dataset("imagenet-compatible", root=tmp_path, label_offset=0, progress=False)


def test_imagenet_compatible_simple_csv_and_resize(tmp_path):
    rng = np.random.default_rng(4)
    write_png(tmp_path / "a.png", rng.integers(0, 256, (30, 30, 3), dtype=np.uint8))
    write_png(tmp_path / "b.png", rng.integers(0, 256, (50, 20, 3), dtype=np.uint8))
    (tmp_path / "labels.csv").write_text("filename,label\na.png,7\nb.png,999\n")
    with pytest.raises(ModelsafeError, match="pass image_size="):
        load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    ds = load_dataset("imagenet-compatible", root=tmp_path, image_size=16, progress=False)
    assert ds.test.x.shape == (2, 3, 16, 16) and ds.test.y.tolist() == [7, 999]
    assert ds.extras["label_offset"] == 0 and "target_labels" not in ds.extras
    one_based = load_dataset("imagenet-compatible", root=tmp_path, image_size=16, label_offset=1, num_classes=1001,
                             progress=False)
    assert one_based.test.y.tolist() == [8, 1000]


def test_progress_flag_reaches_loaders_that_show_a_bar(tmp_path, capsys):
    rng = np.random.default_rng(5)
    write_png(tmp_path / "a.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    (tmp_path / "labels.csv").write_text("filename,label\na.png,7\n")
    load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    assert "imagenet-compatible" not in capsys.readouterr().err
    load_dataset("imagenet-compatible", root=tmp_path, progress=True)
    assert "imagenet-compatible" in capsys.readouterr().err  # tqdm's bar, labelled with the dataset
    assert len(load_dataset("digits", progress=False).test) > 0  # loaders without a bar accept it too


def test_imagenet_compatible_bad_input(tmp_path):
    with pytest.raises(DataNotFoundError, match="images.csv"):
        load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    (tmp_path / "labels.csv").write_text("filename,label\n../secret.png,1\n")
    with pytest.raises(ModelsafeError, match="relative path inside"):
        load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    (tmp_path / "labels.csv").write_text("filename,label\nmissing,1\n")
    with pytest.raises(ModelsafeError, match="'missing' not found"):
        load_dataset("imagenet-compatible", root=tmp_path, progress=False)
    (tmp_path / "labels.csv").write_text("name,cls\na,1\n")
    with pytest.raises(ModelsafeError, match="no image column"):
        load_dataset("imagenet-compatible", root=tmp_path, progress=False)


# ------------------------------------------------------------------------------------------------- text


def test_tokenizer_and_vocabulary():
    assert tokenize("Don't PANIC: it's 42_times, naïve!") == ["don't", "panic", "it's", "42", "times", "naïve"]
    vocab = build_vocabulary([["b", "a", "b"], ["c", "a", "b"]], min_freq=2)
    assert vocab.tokens == ("<pad>", "<unk>", "b", "a")
    assert build_vocabulary([["b", "a", "b", "c"]], max_size=3).tokens == ("<pad>", "<unk>", "b")
    ids = vocab.encode(["a b zzz a", ""], max_len=3)
    assert ids.dtype == torch.int64 and ids.tolist() == [[3, 2, 1], [0, 0, 0]]
    with pytest.raises(ModelsafeError, match="max_size"):
        build_vocabulary([["a"]], max_size=2)
    with pytest.raises(ModelsafeError):
        Vocabulary(("a", "b"))


def test_text_csv_train_and_test_files(tmp_path):
    with open(tmp_path / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["review", "sentiment"])
        w.writerows([["Great movie, great cast", "pos"], ["awful plot", "neg"], ["great fun", "pos"]])
    (tmp_path / "test.csv").write_text("review,sentiment\nunseenword great,pos\nawful,neg\n")
    ds = load_dataset("text", root=tmp_path, text_column="review", label_column="sentiment", max_len=4)
    assert ds.info.kind == "text" and ds.info.classes == ("neg", "pos") and ds.info.input_shape == (4,)
    vocab = ds.extras["vocabulary"]
    assert "unseenword" not in vocab.index  # the vocabulary comes from the train split only
    assert ds.info.vocab_size == len(vocab) and vocab.tokens[2] == "great"
    assert ds.train.x.shape == (3, 4) and ds.train.x.dtype == torch.int64
    assert ds.train.y.tolist() == [1, 0, 1] and ds.test.y.tolist() == [1, 0]
    assert ds.test.x[0].tolist() == [1, vocab.index["great"], 0, 0]
    assert ds.extras["split"]["method"] == "separate files"


def test_text_jsonl_single_file_seeded_split_and_training(tmp_path):
    words = {0: ["sun", "beach", "warm"], 1: ["snow", "ice", "cold"], 2: ["rain", "wet", "cloud"]}
    rng = np.random.default_rng(5)
    with open(tmp_path / "weather.jsonl", "w") as fh:
        for i in range(90):
            label = i % 3
            text = " ".join(rng.choice(words[label], size=4))
            fh.write(json.dumps({"text": text.upper(), "label": label}) + "\n")
    ds = load_dataset("text", root=tmp_path / "weather.jsonl", max_len=6, seed=3)
    assert len(ds.train) == 72 and len(ds.test) == 18 and ds.info.classes == ("0", "1", "2")
    assert ds.extras["split"]["seed"] == 3
    same = load_dataset("text", root=tmp_path / "weather.jsonl", max_len=6, seed=3)
    assert torch.equal(same.test.x, ds.test.x)

    from modelsafe.models import create_model_for

    torch.manual_seed(0)
    model = create_model_for("text", ds.info)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = ds.train.features(), ds.train.y
    for _ in range(25):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        assert (model(ds.test.features()).argmax(1) == ds.test.y).float().mean() == 1.0


def test_text_bad_input(tmp_path):
    with pytest.raises(DataNotFoundError, match="train.csv"):
        load_dataset("text", root=tmp_path)
    (tmp_path / "data.jsonl").write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(ModelsafeError, match="data.jsonl:2: not valid JSON"):
        load_dataset("text", root=tmp_path)
    (tmp_path / "data.jsonl").write_text('{"body": "a", "label": 1}\n')
    with pytest.raises(ModelsafeError, match="no column 'text'"):
        load_dataset("text", root=tmp_path)
    (tmp_path / "data.jsonl").write_text('{"text": "a", "label": ""}\n')
    with pytest.raises(ModelsafeError, match="needs a text string and a label"):
        load_dataset("text", root=tmp_path)
