"""Reading back the files modelsafe writes (JSON records, safetensors weights, torch checkpoints), with one
rule: a missing, truncated, garbled or wrongly shaped file raises :class:`DamagedFileError` (a
:class:`ModelsafeError`) whose one-line message names the file, the field where there is one, and what to do;
nothing below ever surfaces a parser's own exception."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from modelsafe.errors import ModelsafeError
from modelsafe.storage.manifest import DamagedFileError

_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "a JSON object", list: "a list",
               bool: "true or false"}


def _describe(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)


def read_json_file(path: str | os.PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a missing, unreadable, empty or invalid one is a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ModelsafeError(f"{what} {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{what} {path} cannot be read ({exc})") from None
    if not text.strip():
        raise DamagedFileError(f"{what} {path} is empty (an interrupted write?)")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DamagedFileError(f"{what} {path} is not valid JSON ({exc})") from None


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict:
    """A JSON file that must hold an object (a mapping)."""
    data = read_json_file(path, what)
    if not isinstance(data, dict):
        raise DamagedFileError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def require(data: dict, key: str, kind: type | tuple[type, ...], path: str | os.PathLike,
            default: Any = _MISSING) -> Any:
    """``data[key]``, checked to be of ``kind`` (a bool never passes for a number); ``default`` when absent."""
    if key not in data:
        if default is _MISSING:
            raise DamagedFileError(f"{path}: field {key!r} is missing")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    wrong_bool = isinstance(value, bool) and bool not in kinds
    if wrong_bool or not isinstance(value, kinds):
        raise DamagedFileError(f"{path}: field {key!r} must be {_describe(kind)}, got {value!r:.60}")
    return value


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file; a truncated or garbled file is a :class:`DamagedFileError`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelsafeError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DamagedFileError(f"weights file {path} is damaged or not a safetensors file "
                               f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint file") -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs), mapping every failure to one error."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelsafeError(f"{what} {path} does not exist") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            AttributeError, KeyError, IndexError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DamagedFileError(f"{what} {path} is damaged ({first[:160]})") from None
