"""Files modelsafe writes and reads: atomic writes, JSON/CSV, weights (safetensors), the run-folder marker and
manifest with SHA-256 digests, the writer lock, folder ownership, and validated readers."""

from modelsafe.storage.folder import OwnedFolder
from modelsafe.storage.io import (
    atomic_write,
    load_weights,
    read_json,
    save_weights,
    write_csv,
    write_json,
    write_text,
)
from modelsafe.storage.lock import FolderLock
from modelsafe.storage.manifest import DamagedFileError, Manifest

__all__ = ["DamagedFileError", "FolderLock", "Manifest", "OwnedFolder", "atomic_write", "load_weights", "read_json",
           "save_weights", "write_csv", "write_json", "write_text"]
