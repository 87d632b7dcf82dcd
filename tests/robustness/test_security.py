"""Hostile archives and folders, generated here: refused by name, nothing extracted or kept in the cache."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest

from modelsafe.data import load_dataset
from modelsafe.errors import ModelsafeError

G = "security"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELSAFE_DATA", raising=False)
    monkeypatch.delenv("MODELSAFE_MAX_EXTRACT_BYTES", raising=False)
    monkeypatch.delenv("MODELSAFE_MAX_EXTRACT_FILES", raising=False)


def purchase_rows(n: int = 30) -> bytes:
    rng = np.random.default_rng(0)
    return "".join(f"{i % 100 + 1}," + ",".join(map(str, rng.integers(0, 2, 600))) + "\n"
                   for i in range(n)).encode()


def tar_with(path, members):
    """``members``: (TarInfo, bytes | None) pairs written as they are (no rewriting on our side)."""
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, (data if kind == tarfile.REGTYPE else None)


GOOD = ("dataset_purchase", None)
TARS = {
    "absolute path": [member("/tmp/modelsafe-evil.txt")],
    "dot-dot path": [member("../../evil.txt")],
    "nested dot-dot": [member("a/../../evil.txt")],
    "symlink to /etc": [member("dataset_purchase", kind=tarfile.SYMTYPE, link="/etc/passwd")],
    "symlink climbing out": [member("sub/link", kind=tarfile.SYMTYPE, link="../../../outside")],
    "hard link out": [member("dataset_purchase", kind=tarfile.LNKTYPE, link="/etc/passwd")],
    "device file": [member("dev", kind=tarfile.CHRTYPE)],
    "fifo": [member("pipe", kind=tarfile.FIFOTYPE)],
}


@pytest.mark.parametrize("case", sorted(TARS))
def test_hostile_tar_is_refused(cli, tmp_path, case):
    root = tmp_path / "data"
    root.mkdir()
    tar_with(root / "dataset_purchase.tgz", [member("dataset_purchase", purchase_rows()), *TARS[case]])
    cli.fails(G, "train", "--dataset", "purchase100", "--data-root", root, "--out", tmp_path / "run",
              "--no-progress", match=("dataset_purchase.tgz", "refused"))
    cache = tmp_path / "cache" / "modelsafe" / "purchase100"
    assert not cache.exists() or not any(cache.iterdir()), list(cache.rglob("*"))
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "run").exists()


ZIPS = {
    "absolute path": "/evil.txt",
    "windows drive": "C:/evil.txt",
    "dot-dot path": "../evil.txt",
    "backslash dot-dot": "..\\evil.txt",
}


@pytest.mark.parametrize("case", sorted(ZIPS))
def test_hostile_zip_is_refused(cli, tmp_path, case):
    from modelsafe.data.files import safe_extract

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(ZIPS[case], "evil")
    with pytest.raises(ModelsafeError, match="refused"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out" / "ok.txt").exists()  # checked before anything is written
    cli.count(G)


def test_zip_bomb_is_capped(cli, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    zpath = root / "tiny-imagenet-200.zip"
    with zipfile.ZipFile(zpath, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-imagenet-200/wnids.txt", "n01\n")
        zf.writestr("tiny-imagenet-200/zeros.bin", b"\x00" * (4 << 20))  # 4 MiB from about 4 KB
    assert zpath.stat().st_size < 50_000
    monkeypatch.setenv("MODELSAFE_MAX_EXTRACT_BYTES", str(1 << 20))
    cli.fails(G, "train", "--dataset", "tiny-imagenet", "--data-root", root, "--out", tmp_path / "run",
              "--no-progress", match=("expands to more than 1,048,576 bytes", "MODELSAFE_MAX_EXTRACT_BYTES"))
    assert not list((tmp_path / "cache").rglob("zeros.bin"))


def test_member_count_is_capped(tmp_path, monkeypatch, cli):
    from modelsafe.data.files import safe_extract

    path = tar_with(tmp_path / "many.tar.gz", [member(f"f{i}") for i in range(20)])
    monkeypatch.setenv("MODELSAFE_MAX_EXTRACT_FILES", "10")
    with pytest.raises(ModelsafeError, match="more than 10 members"):
        safe_extract(path, tmp_path / "out")
    with pytest.raises(ModelsafeError, match="more than 5 members"):
        safe_extract(path, tmp_path / "out", max_files=5)
    safe_extract(path, tmp_path / "out", max_files=20)
    monkeypatch.setenv("MODELSAFE_MAX_EXTRACT_FILES", "lots")
    with pytest.raises(ModelsafeError, match="whole number"):
        safe_extract(path, tmp_path / "out2")
    cli.count(G, 4)


def test_refused_or_incomplete_archive_leaves_nothing_and_does_not_block_a_good_one(cli, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    archive = root / "dataset_purchase.tgz"
    tar_with(archive, [member("other_file", b"not the dataset")])
    cli.fails(G, "train", "--dataset", "purchase100", "--data-root", root, "--out", tmp_path / "r1",
              "--no-progress", match=("does not hold dataset_purchase", "nothing was kept"))
    tar_with(archive, [member("dataset_purchase", purchase_rows()), member("/abs/evil")])
    cli.fails(G, "train", "--dataset", "purchase100", "--data-root", root, "--out", tmp_path / "r1",
              "--no-progress", match="refused")
    cache = tmp_path / "cache" / "modelsafe" / "purchase100"
    assert not cache.exists() or not any(cache.iterdir())
    tar_with(archive, [member("dataset_purchase", purchase_rows(300))])
    data = load_dataset("purchase100", root=root)
    assert len(data.train) + len(data.test) == 300
    cli.count(G)


def test_stale_partial_extraction_is_removed(tmp_path):
    import os
    import time

    from modelsafe.data.archives import extract_into

    dest = tmp_path / "dest"
    stale = dest / ".extracting-abc123"
    stale.mkdir(parents=True)
    (stale / "half.bin").write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    archive = tar_with(tmp_path / "a.tgz", [member("file.txt")])
    extract_into(archive, dest)
    assert (dest / "file.txt").is_file() and not stale.exists()


def write_png(path, value=0):
    from PIL import Image

    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path, format="PNG")


def test_image_folder_symlink_out_of_root_is_refused(cli, tmp_path):
    outside = tmp_path / "secret.png"
    write_png(outside, 255)
    root = tmp_path / "images-root"
    (root / "images").mkdir(parents=True)
    write_png(root / "images" / "a.png")
    (root / "images" / "b.png").symlink_to(outside)
    (root / "labels.csv").write_text("filename,label\na,1\nb,2\n")
    cli.fails(G, "attack", "--surrogate", "timm:resnet18", "--dataset", "imagenet-compatible", "--data-root", root,
              "--out", tmp_path / "out", "--no-progress", match=("b.png", "outside the dataset folder"))
    (root / "images" / "b.png").unlink()
    (root / "images" / "b.png").symlink_to(root / "images" / "a.png")  # a link inside the root is fine
    data = load_dataset("imagenet-compatible", root=root, progress=False)
    assert len(data.test) == 2


@pytest.mark.parametrize("csv_bytes, message", [(b"filename,label\n\xff\xfe\x00,1\n", "cannot be read"),
                                                (b"filename,label\n/etc/passwd,1\n", "relative path inside"),
                                                (b"filename,label\n../x.png,1\n", "relative path inside")])
def test_image_folder_csv_is_checked(cli, tmp_path, csv_bytes, message):
    root = tmp_path / "images-root"
    root.mkdir()
    (root / "labels.csv").write_bytes(csv_bytes)
    cli.fails(G, "attack", "--surrogate", "timm:resnet18", "--dataset", "imagenet-compatible", "--data-root", root,
              "--out", tmp_path / "out", "--no-progress", match=("labels.csv", message))


def test_plain_http_downloads_are_refused(cli, tmp_path):
    from modelsafe.data import idx, tiny_imagenet
    from modelsafe.data.cifar import _URL
    from modelsafe.data.files import download

    with pytest.raises(ModelsafeError, match="plain http"):
        download("http://example.invalid/x.gz", tmp_path / "x.gz")
    urls = [url for url, _ in idx._SOURCES.values()] + [tiny_imagenet.LAYOUT.url, _URL]
    assert all(u.startswith("https://") for u in urls), urls
    cli.count(G, 2)
