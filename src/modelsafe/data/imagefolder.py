"""``imagenet-compatible``: a folder of ImageNet-class images plus a labels CSV, the layout of the NIPS-2017
adversarial-competition development set that the transfer-attack papers (S-FGRM, SI-NI-FGSM, VT) evaluate on.

Recognised CSVs (first found): ``labels.csv``, ``images.csv`` (NIPS-2017: ``ImageId,...,TrueLabel,TargetClass,...``),
``dev_dataset.csv``, ``val_rs.csv`` (``filename,label``), or any file named by ``labels_file``. The image column
is ``ImageId``/``filename``/``image`` and the label column ``TrueLabel``/``label`` (case-insensitive), unless
given. An image name without extension gets ``.png`` (then ``.jpg``/``.jpeg``); images are looked for in
``images/`` beside the CSV, then beside it.

Label indexing: the NIPS-2017 labels use the 1001-class TF-slim indexing (0 = background), while timm and
torchvision heads use 1000 classes. ``label_offset`` is added to every label; by default it is -1 for a
``TrueLabel`` column (the NIPS-2017 CSV) and 0 otherwise (pass -1 for S-FGRM's ``val_rs.csv``, also 1001-class).

The set is for evaluation only: everything is in ``test`` and ``train`` is empty.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch

from modelsafe._checks import check_positive_int
from modelsafe.data.archives import first_existing
from modelsafe.data.files import check_inside, missing, search_dirs
from modelsafe.data.images import read_images
from modelsafe.data.info import Dataset, DatasetInfo, TensorData
from modelsafe.errors import ModelsafeError

NAME = "imagenet-compatible"
CSV_NAMES = ("labels.csv", "images.csv", "dev_dataset.csv", "val_rs.csv")
IMAGE_COLUMNS = ("imageid", "filename", "image")
LABEL_COLUMNS = ("truelabel", "label")
TARGET_COLUMN = "targetclass"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_EXTENSIONS = (".png", ".jpg", ".jpeg")


def find_labels_file(root: str | os.PathLike | None, labels_file: str | None = None) -> Path:
    names = (labels_file,) if labels_file else CSV_NAMES
    for d in search_dirs(NAME, root):
        found = first_existing(d, names)
        if found is not None:
            return found
    raise missing(NAME, [" or ".join(names) + " (with the images beside it or in images/)"], root,
                  "Put the NIPS-2017 development set (images/ and images.csv) or any folder of ImageNet-class "
                  "images with a filename,label CSV in one of those folders.")


def _column(header: list[str], given: str | None, candidates: tuple[str, ...], what: str, path: Path) -> str:
    lowered = {h.strip().lower(): h for h in header}
    for name in ((given.lower(),) if given else candidates):
        if name in lowered:
            return lowered[name]
    raise ModelsafeError(f"{path}: no {what} column ({given or ' / '.join(candidates)}); columns are {header}")


def _image_path(folder: Path, name: str, where: str) -> Path:
    rel = Path(name)
    if not name or rel.is_absolute() or ".." in rel.parts:
        raise ModelsafeError(f"{where}: image name {name!r} must be a relative path inside the dataset folder")
    names = [name] if rel.suffix.lower() in _EXTENSIONS else [name + ext for ext in _EXTENSIONS]
    for directory in (folder / "images", folder):
        found = first_existing(directory, names)
        if found is not None:
            check_inside([found], folder, where)
            return found
    raise ModelsafeError(f"{where}: image {name!r} not found in {folder / 'images'} or {folder}")


def _int(value: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise ModelsafeError(f"{where}: label {value!r} is not an integer") from None


def load_imagenet_compatible(root: str | os.PathLike | None = None, image_size: int | None = None,
                             label_offset: int | None = None, num_classes: int = 1000,
                             labels_file: str | None = None, image_column: str | None = None,
                             label_column: str | None = None, progress: bool = True) -> Dataset:
    """Load every listed image as uint8 (N, 3, H, W) in ``test`` (``train`` is empty). Without ``image_size``
    all images must share one size; with it each is resized to ``image_size`` x ``image_size``. Labels,
    after ``label_offset``, must lie in [0, ``num_classes``). ``extras`` holds ``image_ids`` (CSV order),
    ``label_offset`` (the one applied), ``labels_file`` and, for the NIPS-2017 CSV, ``target_labels`` (its
    ``TargetClass`` column, offset the same way)."""
    if image_size is not None:
        check_positive_int("image_size", image_size)
    check_positive_int("num_classes", num_classes)
    path = find_labels_file(root, labels_file)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = list(reader.fieldnames or [])
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise ModelsafeError(f"{path} cannot be read as a UTF-8 CSV file ({exc})") from None
    if not rows:
        raise ModelsafeError(f"{path} lists no images")
    image_col = _column(header, image_column, IMAGE_COLUMNS, "image", path)
    label_col = _column(header, label_column, LABEL_COLUMNS, "label", path)
    target_col = next((h for h in header if h.strip().lower() == TARGET_COLUMN), None)
    if label_offset is None:
        label_offset = -1 if label_col.strip().lower() == "truelabel" else 0
    ids, paths, labels, targets = [], [], [], []
    for lineno, row in enumerate(rows, 2):
        where = f"{path}:{lineno}"
        ids.append((row[image_col] or "").strip())
        paths.append(_image_path(path.parent, ids[-1], where))
        labels.append(_int(row[label_col] or "", where) + label_offset)
        if target_col is not None:
            targets.append(_int(row[target_col] or "", where) + label_offset)
    for values, what in ((labels, "labels"), (targets, "target labels")):
        if values and (min(values) < 0 or max(values) >= num_classes):
            raise ModelsafeError(
                f"{path}: {what} after label_offset={label_offset} span [{min(values)}, {max(values)}], outside "
                f"[0, {num_classes}); 1001-class (TF-slim) labels need label_offset=-1 for 1000-class models")
    x = read_images(paths, size=image_size, progress=progress, desc=NAME)
    empty = TensorData(torch.zeros((0, *x.shape[1:]), dtype=torch.uint8), torch.zeros(0, dtype=torch.int64))
    test = TensorData(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64))
    extras: dict = {"image_ids": tuple(ids), "label_offset": label_offset, "labels_file": str(path)}
    if target_col is not None:
        extras["target_labels"] = torch.from_numpy(np.asarray(targets, dtype=np.int64))
    info = DatasetInfo(NAME, "image", num_classes, tuple(x.shape[1:]), IMAGENET_MEAN, IMAGENET_STD)
    return Dataset(info, empty, test, extras=extras)
