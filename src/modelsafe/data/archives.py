"""Locating a dataset's files: an extracted folder in a search directory, else a distribution archive there
(extracted once into the user cache), else, where the dataset has a checksummed official source and the
caller allows it, a download into the cache."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelsafe.data.files import cache_dir, download, missing, safe_extract, search_dirs
from modelsafe.errors import ModelsafeError


@dataclass(frozen=True)
class Layout:
    """Where a dataset's files sit.

    ``required``: paths (relative to the dataset folder) that must all exist. ``subdirs``: names the dataset
    folder may have inside a search directory (the search directory itself is tried last). ``archives``:
    distribution archives (tar, tar.gz or zip) that unpack into one of those places. ``url``/``md5``: the
    official archive, fetched only with ``download=True`` (its name is ``archives[0]``)."""

    required: tuple[str, ...]
    subdirs: tuple[str, ...] = ()
    archives: tuple[str, ...] = ()
    url: str | None = None
    md5: str | None = None

    def folder_in(self, directory: Path) -> Path | None:
        for base in [directory / s for s in self.subdirs] + [directory]:
            if all((base / f).is_file() for f in self.required):
                return base
        return None

    def describe(self) -> list[str]:
        where = f" (in {' or '.join(s + '/' for s in self.subdirs)} or directly)" if self.subdirs else ""
        parts = [", ".join(self.required) + where]
        if self.archives:
            parts.append("or the archive " + " / ".join(self.archives))
        return parts


def locate(name: str, layout: Layout, root: str | os.PathLike | None, how_to_get: str,
           download_missing: bool = False) -> Path:
    """The folder holding every file of ``layout.required``. Raises :class:`DataNotFoundError` naming every
    place it looked, and :class:`ModelsafeError` for an archive that is corrupt, unsafe or incomplete."""
    dirs = search_dirs(name, root)
    for d in dirs:
        found = layout.folder_in(d)
        if found is not None:
            return found
    for d in dirs:
        for archive in layout.archives:
            if (d / archive).is_file():
                return _from_archive(name, layout, d / archive)
    if download_missing and layout.url is not None:
        archive = cache_dir(name) / layout.archives[0]
        download(layout.url, archive, md5=layout.md5)
        return _from_archive(name, layout, archive)
    hint = how_to_get
    if layout.url is not None:
        hint += " Or pass download=True (CLI: --download) to fetch the official archive."
    raise missing(name, layout.describe(), root, hint)


def _from_archive(name: str, layout: Layout, archive: Path) -> Path:
    dest = cache_dir(name)
    complete = lambda folder: layout.folder_in(folder) is not None
    try:
        extract_into(archive, dest, accept=complete)
    except IncompleteArchiveError:
        raise ModelsafeError(f"dataset {name!r}: {archive} does not hold {', '.join(layout.required)}; nothing "
                             "was kept from it") from None
    found = layout.folder_in(dest)
    if found is None:
        raise ModelsafeError(f"dataset {name!r}: {archive} was extracted into {dest} but does not hold "
                             f"{', '.join(layout.required)}")
    return found


class IncompleteArchiveError(ModelsafeError):
    """An archive extracted cleanly but lacks the files it was expected to hold."""


def _clean_stale_extractions(dest: Path, older_than: float = 3600.0) -> None:
    """Remove what an extraction killed over an hour ago left behind."""
    now = time.time()
    for stale in dest.glob(".extracting-*"):
        try:
            if now - stale.stat().st_mtime > older_than:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass


def extract_into(archive: Path, dest: Path, accept: Callable[[Path], bool] | None = None) -> None:
    """Extract ``archive`` into ``dest`` atomically: members are unpacked (safely, see
    :func:`modelsafe.data.extract.safe_extract`) into a temporary folder inside ``dest``; only when that
    succeeded, and ``accept(folder)`` (if given) approves the result, is each top-level entry moved into
    place, replacing a stale one of the same name. A refused, failed or incomplete extraction leaves nothing."""
    dest.mkdir(parents=True, exist_ok=True)
    _clean_stale_extractions(dest)
    tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extracting-"))
    try:
        try:
            safe_extract(archive, tmp)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise ModelsafeError(f"cannot extract {archive}: {exc}") from None
        if accept is not None and not accept(tmp):
            raise IncompleteArchiveError(f"{archive} does not hold the expected files")
        for entry in tmp.iterdir():
            target = dest / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def first_existing(directory: Path, names: Sequence[str]) -> Path | None:
    """``directory/name`` for the first of ``names`` that is a file, or None."""
    for n in names:
        if (directory / n).is_file():
            return directory / n
    return None
