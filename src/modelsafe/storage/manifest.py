"""``modelsafe.json``: the marker that says modelsafe wrote a folder, and the list of what it wrote there.

::

    {"format": "modelsafe-folder", "version": 1, "kind": "run",
     "files": {"config.json": null, "weights.safetensors": "<sha256>", "checkpoint": null, ...}}

``files`` maps each entry modelsafe owns (a file or a folder, relative to the folder) to the SHA-256 of its
content where one is recorded (weights), else null. ``--overwrite`` removes exactly these entries; loading a
weights file checks its recorded digest."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from modelsafe.errors import ModelsafeError

MARKER = "modelsafe.json"
FORMAT = "modelsafe-folder"
VERSION = 1


class DamagedFileError(ModelsafeError):
    """A file modelsafe wrote no longer has the content it wrote (or cannot be parsed)."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_entry_name(name: object, where: Path) -> str:
    """An entry must be a plain relative path inside the folder (no ``..``, not absolute, not the marker)."""
    if not isinstance(name, str) or not name or "\\" in name:
        raise DamagedFileError(f"{where}: entry {name!r} is not a relative path")
    parts = PurePosixPath(name).parts
    if PurePosixPath(name).is_absolute() or ".." in parts or "." in parts or name == MARKER:
        raise DamagedFileError(f"{where}: entry {name!r} points outside the folder")
    return name


@dataclass
class Manifest:
    """What one folder holds: its ``kind`` (run, audit, attack, compare, demo) and owned ``files``."""

    kind: str
    files: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Manifest | None:
        """The folder's manifest, None when it has no marker; a damaged marker is an error."""
        path = Path(folder) / MARKER
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DamagedFileError(f"{path} is damaged ({exc}); modelsafe cannot tell which files in "
                                   f"{folder} it wrote, so choose a new folder") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
            raise DamagedFileError(f"{path} is not a modelsafe folder marker; choose a new folder")
        if data.get("version") != VERSION:
            raise ModelsafeError(f"{path}: folder format version {data.get('version')!r} is not supported")
        files = {}
        for name, digest in data["files"].items():
            check_entry_name(name, path)
            if digest is not None and not (isinstance(digest, str) and len(digest) == 64):
                raise DamagedFileError(f"{path}: entry {name!r} has a malformed SHA-256 {digest!r}")
            files[name] = digest
        return cls(str(data.get("kind")), files)

    def save(self, folder: str | os.PathLike) -> None:
        from modelsafe.storage.io import write_text

        data = {"format": FORMAT, "version": VERSION, "kind": self.kind, "files": dict(sorted(self.files.items()))}
        write_text(Path(folder) / MARKER, json.dumps(data, indent=2) + "\n")

    def declare(self, *names: str) -> None:
        """Add entries (without digest) that modelsafe writes or may write."""
        for name in names:
            self.files.setdefault(name, None)


def verify_digest(folder: str | os.PathLike, name: str, recover: str) -> None:
    """Raise :class:`DamagedFileError` when ``folder/name`` differs from the SHA-256 its manifest records;
    ``recover`` tells the user how to get an intact file. No marker or no recorded digest: nothing to check."""
    manifest = Manifest.load(folder)
    expected = manifest.files.get(name) if manifest is not None else None
    path = Path(folder) / name
    if expected is None or not path.is_file():
        return
    if sha256_file(path) != expected:
        raise DamagedFileError(f"{path} is damaged: its SHA-256 differs from the one recorded in "
                               f"{Path(folder) / MARKER} when it was written; {recover}")
