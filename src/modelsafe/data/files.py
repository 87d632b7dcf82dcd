"""Finding dataset files on disk, downloading them with checksum verification, and safe archive extraction."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from modelsafe.data.extract import safe_extract
from modelsafe.errors import DataNotFoundError, ModelsafeError

__all__ = ["cache_dir", "check_inside", "download", "file_digest", "find_files", "missing", "resolve",
           "safe_extract", "search_dirs"]


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


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 60.0, sha256: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically; a checksum mismatch (SHA-256 where the source publishes one, else
    MD5) deletes the partial file and raises. Plain http is refused: remote sources are fetched over https."""
    if url.lower().startswith("http://"):
        raise ModelsafeError(f"refusing to download {url}: plain http; use the source's https address")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                for chunk in iter(lambda: resp.read(1 << 20), b""):
                    out.write(chunk)
        except OSError as exc:  # URLError, timeouts, disk full
            raise ModelsafeError(f"download of {url} failed: {exc}") from None
        for algorithm, expected in (("sha256", sha256), ("md5", md5)):
            if expected is not None:
                got = file_digest(tmp, algorithm)
                if got != expected:
                    raise ModelsafeError(f"checksum mismatch for {url}: expected {algorithm} {expected}, got {got}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def check_inside(paths: Sequence[Path], root: Path, what: str) -> None:
    """Refuse any of ``paths`` that resolves outside ``root`` (a symlink out of the dataset folder)."""
    base = root.resolve()
    for path in paths:
        real = path.resolve()
        if real != base and base not in real.parents:
            raise ModelsafeError(f"{what}: {path} leads outside the dataset folder {root} (to {real}); "
                                 "symlinks out of a dataset are refused")
