"""Real compression: a safetensors file in which each tensor is stored in whichever of three layouts is
smallest, and an exact loader.

Layouts (``name`` is the state-dict key):

* ``dense``: the tensor itself, under ``name``.
* ``bitmask``: ``name.__bitmask__`` (uint8, one bit per element, little-endian bit order, flattened row-major)
  and ``name.__values__`` (the non-zero elements in row-major order, original dtype).
* ``csr``: the tensor viewed as (shape[0], rest) in compressed sparse rows: ``name.__indptr__`` (int32/int64,
  rows + 1), ``name.__indices__`` (column of each non-zero; int16 when there are at most 32,767 columns,
  else int32/int64) and ``name.__values__``.

The safetensors metadata key ``modelsafe.sparse`` holds JSON ``{"version": 1, "tensors": {name: {"layout",
"shape", "dtype"}}}`` to restore shapes. Zeros of either sign are left out (pruning by multiplication leaves
``-0.0`` behind) and come back as ``+0.0``; every other value, NaN included, comes back bit for bit, so the
restored tensors are ``torch.equal`` to the originals. The header is written with sorted keys, so the same
state dict and metadata always give the same bytes. Only torch, numpy and safetensors are used.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_bytes
from torch import nn

from modelsafe.errors import ModelsafeError
from modelsafe.storage.io import atomic_write

META_KEY = "modelsafe.sparse"
FORMAT_VERSION = 1
_SUFFIXES = (".__bitmask__", ".__values__", ".__indptr__", ".__indices__")


@dataclass(frozen=True)
class ExportReport:
    """``dense_bytes``: size of the plain safetensors file of the same state dict; ``sparse_bytes``: size of
    the written file; ``layouts``: the layout chosen per tensor."""

    path: Path
    dense_bytes: int
    sparse_bytes: int
    layouts: dict[str, str] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """How many times smaller the sparse file is."""
        return self.dense_bytes / self.sparse_bytes


def _index_dtype(limit: int) -> torch.dtype:
    """The smallest signed integer dtype holding every value in [0, limit]."""
    for dtype in (torch.int16, torch.int32):
        if limit <= torch.iinfo(dtype).max:
            return dtype
    return torch.int64


def pack(name: str, tensor: torch.Tensor) -> tuple[str, dict[str, torch.Tensor]]:
    """Choose the smallest layout for one tensor; returns (layout, tensors to store)."""
    t = tensor.detach().cpu().contiguous()
    if not t.is_floating_point() or t.dim() == 0 or t.numel() == 0:
        return "dense", {name: t.clone()}
    nz = t != 0  # NaN counts as non-zero
    nnz, size = int(nz.sum()), t.element_size()
    rows = t.shape[0] if t.dim() > 1 else 1
    cols = t.numel() // rows
    indptr_t, indices_t = _index_dtype(nnz), _index_dtype(max(0, cols - 1))
    costs = {
        "dense": t.numel() * size,
        "bitmask": math.ceil(t.numel() / 8) + nnz * size,
        "csr": (rows + 1) * indptr_t.itemsize + nnz * (indices_t.itemsize + size),
    }
    layout = min(costs, key=costs.get)  # ties keep the first: dense
    if layout == "dense":
        return layout, {name: t.clone()}
    values = t.flatten()[nz.flatten()].clone()
    if layout == "bitmask":
        bits = np.packbits(nz.flatten().numpy(), bitorder="little")
        return layout, {f"{name}.__bitmask__": torch.from_numpy(bits), f"{name}.__values__": values}
    grid = nz.view(rows, cols)
    indptr = torch.zeros(rows + 1, dtype=torch.int64)
    indptr[1:] = grid.sum(1).cumsum(0)
    indices = grid.nonzero()[:, 1]
    return layout, {f"{name}.__indptr__": indptr.to(indptr_t), f"{name}.__indices__": indices.to(indices_t),
                    f"{name}.__values__": values}


def unpack(name: str, layout: str, shape: list[int], dtype: torch.dtype, stored: Mapping[str, torch.Tensor]
           ) -> torch.Tensor:
    """Inverse of :func:`pack`."""
    if layout == "dense":
        return stored[name]
    numel = math.prod(shape)
    values = stored[f"{name}.__values__"]
    if layout == "bitmask":
        bits = np.unpackbits(stored[f"{name}.__bitmask__"].numpy(), count=numel, bitorder="little")
        nz = torch.from_numpy(bits.astype(bool))
    elif layout == "csr":
        rows = shape[0] if len(shape) > 1 else 1
        indptr = stored[f"{name}.__indptr__"].long()
        row_of = torch.repeat_interleave(torch.arange(rows), indptr[1:] - indptr[:-1])
        nz = torch.zeros(numel, dtype=torch.bool)
        nz[row_of * (numel // rows) + stored[f"{name}.__indices__"].long()] = True
    else:
        raise ModelsafeError(f"unknown sparse layout {layout!r} for tensor {name!r}")
    if int(nz.sum()) != values.numel():
        raise ModelsafeError(f"corrupt sparse tensor {name!r}: {int(nz.sum())} positions, {values.numel()} values")
    out = torch.zeros(numel, dtype=dtype)
    out[nz] = values
    return out.view(shape)


def _state(model_or_state: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else dict(model_or_state)
    clash = [k for k in state if k.endswith(_SUFFIXES)]
    if clash:
        raise ModelsafeError(f"state-dict keys {clash} clash with the sparse-file suffixes {_SUFFIXES}")
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header re-serialised with sorted keys, so that the same
    tensors and metadata always give the same bytes (safetensors writes metadata in hash order). The tensor
    bytes and their offsets are unchanged; the header is padded with spaces to a multiple of 8 bytes."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def export_sparse(model: nn.Module | Mapping[str, torch.Tensor], path: str | os.PathLike,
                  metadata: Mapping[str, str] | None = None) -> ExportReport:
    """Write ``model``'s state dict (or a state dict) to ``path`` with every tensor in its smallest layout;
    returns the measured dense and sparse sizes. The file is written atomically."""
    state = _state(model)
    stored: dict[str, torch.Tensor] = {}
    index = {}
    for name, tensor in state.items():
        layout, parts = pack(name, tensor)
        stored.update(parts)
        index[name] = {"layout": layout, "shape": list(tensor.shape), "dtype": str(tensor.dtype).removeprefix("torch.")}
    meta = {**(metadata or {}), META_KEY: json.dumps({"version": FORMAT_VERSION, "tensors": index}, sort_keys=True)}
    data = canonical_safetensors(save_bytes(stored, metadata=meta))
    path = atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    dense_bytes = len(save_bytes({k: v.clone() for k, v in state.items()}))
    return ExportReport(path, dense_bytes, path.stat().st_size, {k: v["layout"] for k, v in index.items()})


def load_sparse(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The exact state dict stored by :func:`export_sparse` (a plain safetensors file loads as is); use it
    with ``model.load_state_dict(load_sparse(path))``. A truncated, garbled or inconsistent file raises
    :class:`~modelsafe.storage.manifest.DamagedFileError` naming it."""
    from safetensors import SafetensorError

    from modelsafe.storage.manifest import DamagedFileError

    path = Path(path)
    if not path.is_file():
        raise ModelsafeError(f"no sparse weights file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = (f.metadata() or {}).get(META_KEY)
            stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DamagedFileError(f"sparse weights file {path} is damaged or not a safetensors file ({exc})") from None
    if meta is None:
        return stored
    try:
        info = json.loads(meta)
        if info.get("version") != FORMAT_VERSION:
            raise ModelsafeError(f"{path}: unsupported sparse format version {info.get('version')!r}")
        return {name: unpack(name, entry["layout"], entry["shape"], _dtype(entry["dtype"]), stored)
                for name, entry in info["tensors"].items()}
    except ModelsafeError as exc:
        raise DamagedFileError(f"sparse weights file {path} is damaged: {exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError, RuntimeError, IndexError) as exc:
        raise DamagedFileError(f"sparse weights file {path} is damaged: its layout index does not match its "
                               f"tensors ({type(exc).__name__}: {exc})") from None


def _dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, str(name), None)
    if not isinstance(dtype, torch.dtype):
        raise ModelsafeError(f"unknown dtype {name!r}")
    return dtype
