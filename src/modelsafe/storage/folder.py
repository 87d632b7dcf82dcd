"""Output folders modelsafe owns: marked with ``modelsafe.json``, locked while written, cleared only of what
modelsafe itself wrote.

Rules (every command that writes a folder follows them):

* a path that is a file, or a folder that cannot be created, is refused;
* a non-empty folder without the marker belongs to someone else: it is refused, never written into or
  cleared, whatever the options;
* a marked folder of another kind (e.g. an attack folder given as a run folder) is refused;
* ``overwrite`` / ``replace`` remove only the entries the manifest lists, never the folder itself, and
  ``overwrite`` refuses the current folder, a folder above it, the home folder and the filesystem root;
* leftovers of an interrupted write (``.<name>.<random>.tmp`` files, ``checkpoint.tmp`` folders) are removed
  when the folder is claimed again;
* a folder created by a command that then fails before writing anything is removed again."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from modelsafe.errors import ModelsafeError
from modelsafe.storage.lock import LOCK_NAME, FolderLock
from modelsafe.storage.manifest import MARKER, Manifest, sha256_file

T = TypeVar("T")
_TMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # what storage.io.atomic_write leaves when killed
_TMP_DIRS = ("checkpoint.tmp",)


def _protected_reason(path: Path) -> str | None:
    """Why ``--overwrite`` must never clear ``path`` (None: it may)."""
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        return "it is the filesystem root"
    if resolved == Path.home().resolve():
        return "it is the home folder"
    cwd = Path.cwd().resolve()
    if cwd == resolved or resolved in cwd.parents:
        return "it is the current folder or one above it"
    return None


def _inside(target: Path, root: Path) -> bool:
    parent = target.parent.resolve()
    return parent == root or root in parent.parents


def _remove(target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        shutil.rmtree(target)


def _foreign_entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)


class OwnedFolder:
    """``OwnedFolder(path, kind, entries).claim(...)`` makes ``path`` a locked, marked output folder that
    declares ``entries`` (files or folders modelsafe writes there); use it as a context manager to release it.
    """

    def __init__(self, path: str | os.PathLike, kind: str, entries: Iterable[str] = ()):
        self.path = Path(path)
        self.kind = kind
        self.entries = tuple(entries)
        self.lock = FolderLock(self.path)
        self.manifest = Manifest(kind)
        self._created = False

    # ------------------------------------------------------------------ claiming
    def _inspect(self, overwrite: bool) -> None:
        """Refuse paths modelsafe must not write into (before anything is created)."""
        if self.path.exists() and not self.path.is_dir():
            raise ModelsafeError(f"{self.path} is a file, not a folder; give a folder path for the output")
        if not self.path.is_dir():
            return
        manifest = Manifest.load(self.path)
        if manifest is None:
            foreign = _foreign_entries(self.path)
            if foreign:
                shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
                raise ModelsafeError(
                    f"{self.path} already holds files modelsafe did not write ({shown}); modelsafe never writes "
                    f"into or clears such a folder: choose a new folder name, e.g. {self.path / self.kind}")
            return
        if manifest.kind != self.kind:
            raise ModelsafeError(f"{self.path} holds modelsafe {manifest.kind} output, not a {self.kind} folder; "
                                 "choose another folder")
        reason = _protected_reason(self.path) if overwrite else None
        if reason:
            raise ModelsafeError(f"--overwrite never clears {self.path} ({reason}); give the path of a run "
                                 "folder below the current one, or choose a new folder name")

    def _create(self) -> None:
        if self.path.is_dir():
            return
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            if not self.path.is_dir():
                raise ModelsafeError(f"{self.path} is a file, not a folder; give a folder path") from None
        except OSError as exc:
            raise ModelsafeError(f"cannot create folder {self.path}: {exc.strerror or exc}") from None
        else:
            self._created = True

    def claim(self, *, overwrite: bool = False, replace: bool = False, keep: Iterable[str] = ()) -> OwnedFolder:
        """Check, create, lock and mark the folder. ``overwrite``: remove every entry an earlier modelsafe
        write listed (a fresh start). ``replace``: the same, without the protected-folder rule and sparing
        ``keep`` (e.g. a cache), for outputs that are always rewritten whole (audit reports)."""
        self._inspect(overwrite)
        self._create()
        try:
            self.lock.acquire()
        except ModelsafeError:
            self._drop_if_created()
            raise
        try:
            self.manifest = Manifest.load(self.path) or Manifest(self.kind)
            if overwrite or replace:
                self._remove_owned(set(keep) if replace and not overwrite else set())
            self.clean_leftovers()
            self.manifest.declare(*self.entries)
            self.manifest.save(self.path)
        except BaseException:
            self.release(failed=True)
            raise
        return self

    def _remove_owned(self, keep: set[str]) -> None:
        root = self.path.resolve()
        for name in sorted(self.manifest.files, reverse=True):  # children before their parents
            if name in keep:
                continue
            target = self.path / name
            if _inside(target, root):
                _remove(target)
            del self.manifest.files[name]

    def clean_leftovers(self) -> None:
        """Remove what an interrupted atomic write left behind (only ever called on a folder modelsafe owns)."""
        for top, dirs, files in os.walk(self.path):
            for name in files:
                if _TMP_FILE.match(name):
                    (Path(top) / name).unlink(missing_ok=True)
            for name in [d for d in dirs if d in _TMP_DIRS]:
                shutil.rmtree(Path(top) / name, ignore_errors=True)
                dirs.remove(name)

    # ------------------------------------------------------------------ writing
    def declare(self, *names: str) -> None:
        """Add entries to the manifest (before writing them, so that a kill in between leaves them owned)."""
        self.manifest.declare(*names)
        self.manifest.save(self.path)

    def write_checked(self, name: str, write: Callable[[Path], T]) -> T:
        """``write(path)`` for the entry ``name`` and record its SHA-256. The old digest is cleared first, so a
        kill mid-write leaves no digest that the new bytes would contradict."""
        self.manifest.files[name] = None
        self.manifest.save(self.path)
        result = write(self.path / name)
        self.manifest.files[name] = sha256_file(self.path / name)
        self.manifest.save(self.path)
        return result

    # ------------------------------------------------------------------ releasing
    def _drop_if_created(self) -> None:
        if not self._created or not self.path.is_dir():
            return
        if {p.name for p in self.path.iterdir()} <= {MARKER, LOCK_NAME}:
            (self.path / MARKER).unlink(missing_ok=True)
            self.lock.release()
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass

    def release(self, failed: bool = False) -> None:
        """Unlock; after a failure, a folder this claim created and nothing was written to is removed."""
        if failed:
            self._drop_if_created()
        self.lock.release()

    def __enter__(self) -> OwnedFolder:  # noqa: PYI034
        if not self.lock.held:
            self.claim()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.release(failed=exc_type is not None)
