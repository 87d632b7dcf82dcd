"""Finding dataset files on disk, downloading them with checksum verification, and safe archive extraction."""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from modelsafe.errors import DataNotFoundError, ModelsafeError


def search_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Where dataset ``name`` is looked for, in order: ``root`` (and ``root/name``), ``$MODELSAFE_DATA/name``,
    the user cache (``$XDG_CACHE_HOME/modelsafe/name``, default ``~/.cache``), ``/usr/share/datasets/name``."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root) / name, Path(root)]
    if os.environ.get("MODELSAFE_DATA"):
        dirs.append(Path(os.environ["MODELSAFE_DATA"]) / name)
    dirs.append(cache_dir(name))
    dirs.append(Path("/usr/share/datasets") / name)
    return dirs


def cache_dir(name: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelsafe" / name


def find_files(name: str, filenames: Sequence[str], root: str | os.PathLike | None) -> Path | None:
    """The first search directory that holds every one of ``filenames`` (a file may also be present without
    its ``.gz`` suffix), or None."""
    for d in search_dirs(name, root):
        if all(resolve(d, f) is not None for f in filenames):
            return d
    return None


def resolve(directory: Path, filename: str) -> Path | None:
    """``directory/filename``, or the same name without ``.gz`` if only the uncompressed file exists."""
    p = directory / filename
    if p.is_file():
        return p
    if filename.endswith(".gz") and (directory / filename[:-3]).is_file():
        return directory / filename[:-3]
    return None


def missing(name: str, filenames: Sequence[str], root: str | os.PathLike | None, how_to_get: str) -> DataNotFoundError:
    looked = ", ".join(str(d) for d in search_dirs(name, root))
    return DataNotFoundError(
        f"dataset {name!r}: could not find {', '.join(filenames)}; looked in: {looked}. {how_to_get}")


def file_digest(path: Path, algorithm: str = "md5") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` atomically; a checksum mismatch deletes the partial file and raises."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
        if md5 is not None:
            got = file_digest(tmp, "md5")
            if got != md5:
                raise ModelsafeError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar or zip archive into ``dest``, refusing members that would land outside it
    (tar uses the standard ``data`` filter: no absolute paths, links out of the tree or device files)."""
    dest.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    elif zipfile.is_zipfile(archive):
        root = dest.resolve()
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                target = (dest / member).resolve()
                if root != target and root not in target.parents:
                    raise ModelsafeError(f"refusing to extract {member!r} from {archive}: it leaves {dest}")
            zf.extractall(dest)
    else:
        raise ModelsafeError(f"{archive} is neither a tar nor a zip archive")
