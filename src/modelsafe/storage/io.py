"""Atomic writes: a file is written to a temporary sibling and moved into place, so readers never see a
half-written result and an interrupted run leaves the previous version intact."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and then move ``tmp_path`` onto ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _finite(obj):
    """``obj`` with every non-finite float (inf, nan) replaced by None, recursively (JSON has no such numbers).
    ``json.dumps`` never passes floats to ``default``, so this runs before dumping."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _jsonable(obj):
    if isinstance(obj, torch.Tensor):
        return _finite(obj.tolist())
    if hasattr(obj, "tolist"):  # numpy arrays and scalars (a scalar's tolist() is a Python number)
        return _finite(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item):
        return _finite(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, data) -> Path:
    """``data`` as indented JSON; non-finite floats (e.g. ε = inf without DP noise) are written as null."""
    return write_text(path, json.dumps(_finite(data), indent=2, default=_jsonable, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file"):
    """Parse a JSON file; a missing, empty or invalid one raises a one-line :class:`ModelsafeError`."""
    from modelsafe.storage.readers import read_json_file

    return read_json_file(path, what)


def write_csv(path: str | os.PathLike, rows: Iterable[Mapping], columns: list[str] | None = None) -> Path:
    rows = list(rows)
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buf.getvalue())


def save_weights(path: str | os.PathLike, model: torch.nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """Save a model's state dict as safetensors (tensors made contiguous, shared storage copied)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, tmp, metadata=metadata))


def load_weights(path: str | os.PathLike, model: torch.nn.Module, strict: bool = True) -> torch.nn.Module:
    """Load safetensors weights into ``model`` (no pickle involved); a damaged file or one that does not fit
    the model raises :class:`ModelsafeError`."""
    from modelsafe.errors import ModelsafeError
    from modelsafe.storage.readers import load_safetensors

    path = Path(path)
    state = load_safetensors(path)
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())
        raise ModelsafeError(f"weights in {path} do not fit the model: {detail[:300]}") from None
    return model
