"""Tiny-ImageNet (200 classes, 64x64 RGB) from the official ``tiny-imagenet-200`` folder (or its zip).

Layout: ``wnids.txt`` (the 200 WordNet ids), ``words.txt`` (wnid -> names), ``train/<wnid>/images/*.JPEG``
(500 per class) and ``val/images/*.JPEG`` whose labels are in ``val/val_annotations.txt`` (``file<TAB>wnid<TAB>
box``). The validation images all sit in one folder, so their labels must come from that annotation file
(reading ``val/`` as a class-per-folder tree, as the official SafeCompress loader does, gets them wrong). The
official test images have no public labels: modelsafe uses train (100,000) as train and val (10,000) as test.
Class indices follow the sorted wnids (the order a class-per-folder reader of ``train/`` gives).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from modelsafe.data.archives import Layout, locate
from modelsafe.data.files import check_inside
from modelsafe.data.images import channel_stats, read_images
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError

SIZE = 64
LAYOUT = Layout(required=("wnids.txt", "val/val_annotations.txt"), subdirs=("tiny-imagenet-200",),
                archives=("tiny-imagenet-200.zip",), url="https://cs231n.stanford.edu/tiny-imagenet-200.zip",
                md5="90528d7ca1a48142e341f4ef8d21d0de")
_IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def read_wnids(folder: Path) -> list[str]:
    """The class wnids, sorted; duplicates are an error."""
    wnids = [line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()]
    if not wnids:
        raise ModelsafeError(f"{folder / 'wnids.txt'} lists no classes")
    if len(set(wnids)) != len(wnids):
        raise ModelsafeError(f"{folder / 'wnids.txt'} lists a class twice")
    return sorted(wnids)


def read_words(folder: Path, wnids: list[str]) -> tuple[str, ...]:
    """Class names from ``words.txt`` (``wnid<TAB>names``); a wnid without an entry keeps its id as name."""
    names: dict[str, str] = {}
    path = folder / "words.txt"
    if path.is_file():
        for line in path.read_text().splitlines():
            wnid, _, words = line.partition("\t")
            names[wnid.strip()] = words.strip()
    return tuple(names.get(w) or w for w in wnids)


def train_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for index, wnid in enumerate(wnids):
        image_dir = folder / "train" / wnid / "images"
        if not image_dir.is_dir():
            raise ModelsafeError(f"tiny-imagenet: missing training folder {image_dir}")
        files = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ModelsafeError(f"tiny-imagenet: no images in {image_dir}")
        paths += files
        labels += [index] * len(files)
    return paths, labels


def val_files(folder: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """Validation images and labels from ``val/val_annotations.txt``, in the file's order."""
    index = {w: i for i, w in enumerate(wnids)}
    annotations = folder / "val" / "val_annotations.txt"
    paths: list[Path] = []
    labels: list[int] = []
    for lineno, line in enumerate(annotations.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ModelsafeError(f"{annotations}:{lineno}: expected 'file<TAB>wnid<TAB>...', got {line!r}")
        filename, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in index:
            raise ModelsafeError(f"{annotations}:{lineno}: class {wnid!r} is not in wnids.txt")
        path = folder / "val" / "images" / filename
        if Path(filename).name != filename or not path.is_file():
            raise ModelsafeError(f"{annotations}:{lineno}: image {path} does not exist")
        paths.append(path)
        labels.append(index[wnid])
    if not paths:
        raise ModelsafeError(f"{annotations} lists no images")
    return paths, labels


def load_tiny_imagenet(root: str | os.PathLike | None = None, download_missing: bool = False,
                       progress: bool = True) -> Dataset:
    """Tiny-ImageNet as uint8 (N, 3, 64, 64) images: train = the official train split, test = the official
    validation split. Decoding the 110,000 JPEGs takes about a minute on two cores."""
    folder = locate("tiny-imagenet", LAYOUT, root,
                    "Get tiny-imagenet-200.zip (the CS231n distribution) and put it, or its extracted "
                    "tiny-imagenet-200/ folder, in one of those folders.", download_missing)
    wnids = read_wnids(folder)
    splits = []
    for name, (paths, labels) in (("train", train_files(folder, wnids)), ("test", val_files(folder, wnids))):
        check_inside(paths, folder, f"tiny-imagenet {name}")
        x = read_images(paths, expected=(SIZE, SIZE), progress=progress, desc=f"tiny-imagenet {name}")
        splits.append(TensorData(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)))
    mean, std = channel_stats(splits[0].x.numpy())
    info = DatasetInfo("tiny-imagenet", "image", len(wnids), (3, SIZE, SIZE), mean, std, read_words(folder, wnids))
    return Dataset(info, splits[0], splits[1], extras={"wnids": tuple(wnids)})
