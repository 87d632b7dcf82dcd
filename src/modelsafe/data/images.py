"""Decoding image files (JPEG, PNG, ...) into uint8 NCHW arrays with Pillow."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from modelsafe.errors import ModelsafeError


def read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """One image as a uint8 (3, H, W) array; grey or palette images become RGB, an alpha channel is dropped.
    With ``size``, the image is resized to ``size`` x ``size`` (bilinear, antialiased when shrinking)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ModelsafeError(f"cannot read image {path}: {exc}") from None
    return arr.transpose(2, 0, 1)


def write_png(path: Path, image) -> None:
    """Write one (C, H, W) image with values in [0, 1] (C = 1 or 3) as an 8-bit PNG: each value rounded to the
    nearest k/255, so an image already on that grid (an attack's ``quantize=True`` output) is stored exactly.
    Written to a temporary file first, then moved into place."""
    from PIL import Image

    arr = np.asarray(image.detach().cpu().double().numpy() if hasattr(image, "detach") else image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ModelsafeError(f"write_png needs a (1 or 3, H, W) image, got shape {arr.shape}")
    pixels = np.clip(np.rint(arr * 255), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def read_images(paths: Sequence[Path], size: int | None = None, expected: tuple[int, int] | None = None,
                progress: bool = True, desc: str = "images") -> np.ndarray:
    """Decode ``paths`` into one uint8 (N, 3, H, W) array. Without ``size`` every image must have the size of
    the first one (or ``expected`` (H, W) when given); a mismatch names the file."""
    if not paths:
        raise ModelsafeError("no images to read")
    first = read_rgb(paths[0], size)
    shape = first.shape if expected is None else (3, *expected)
    out = np.empty((len(paths), *shape), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress)):
        arr = first if i == 0 else read_rgb(path, size)
        if arr.shape != shape:
            hint = "" if size is not None else "; pass image_size= to resize every image"
            raise ModelsafeError(f"image {path} is {arr.shape[2]}x{arr.shape[1]}, expected "
                                 f"{shape[2]}x{shape[1]}{hint}")
        out[i] = arr
    return out


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, C, H, W) images scaled to [0, 1], accumulated in float64 over
    chunks of ``chunk`` images so that large sets need little extra memory."""
    n_pix = x.shape[0] * x.shape[2] * x.shape[3]
    if n_pix == 0:
        raise ModelsafeError("cannot compute image statistics of an empty set")
    total = np.zeros(x.shape[1])
    total_sq = np.zeros(x.shape[1])
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk].astype(np.float64) / 255.0
        total += part.sum(axis=(0, 2, 3))
        total_sq += np.square(part).sum(axis=(0, 2, 3))
    mean = total / n_pix
    std = np.sqrt(np.maximum(total_sq / n_pix - mean**2, 0.0)).clip(min=1e-6)
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)
