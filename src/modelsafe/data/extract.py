"""Safe extraction of dataset archives (tar, tar.gz, zip).

Every member is checked before anything is written: an absolute path (``/etc/x``, ``C:\\x``), a ``..``
component, a link pointing outside the destination, a device or FIFO member is refused with a
:class:`ModelsafeError` naming it (nothing is rewritten into something else). The total size and the number
of members are capped, so a small archive cannot fill the disk; the caps default to
:data:`DEFAULT_MAX_BYTES` and :data:`DEFAULT_MAX_FILES` and can be changed with the environment variables
``MODELSAFE_MAX_EXTRACT_BYTES`` and ``MODELSAFE_MAX_EXTRACT_FILES`` or per call. Tar members are then
extracted with the standard ``data`` filter as a second line of defence."""

from __future__ import annotations

import os
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from modelsafe.errors import ModelsafeError

DEFAULT_MAX_BYTES = 16 * 2**30  # 16 GiB: the largest supported dataset archive expands to well under that
DEFAULT_MAX_FILES = 1_000_000
_DRIVE = re.compile(r"^[A-Za-z]:")


def extract_limits(max_bytes: int | None = None, max_files: int | None = None) -> tuple[int, int]:
    """The caps in force: the arguments, else the environment variables, else the defaults."""

    def pick(given: int | None, env: str, default: int) -> int:
        if given is not None:
            return given
        text = os.environ.get(env)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise ModelsafeError(f"{env} must be a whole number, got {text!r}") from None
        if value < 1:
            raise ModelsafeError(f"{env} must be >= 1, got {value}")
        return value

    return (pick(max_bytes, "MODELSAFE_MAX_EXTRACT_BYTES", DEFAULT_MAX_BYTES),
            pick(max_files, "MODELSAFE_MAX_EXTRACT_FILES", DEFAULT_MAX_FILES))


def _refused(archive: Path, why: str) -> ModelsafeError:
    return ModelsafeError(f"cannot extract {archive} (refused): {why}")


def check_member_name(name: str, archive: Path) -> None:
    """Refuse a member path that is absolute or climbs out with ``..``."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        raise _refused(archive, f"member {name!r} has an absolute path (it leaves the "
                             "extraction folder)")
    if ".." in PurePosixPath(posix).parts:
        raise _refused(archive, f"member {name!r} leaves the extraction folder through '..'")


class _Budget:
    def __init__(self, archive: Path, max_bytes: int, max_files: int):
        self.archive, self.max_bytes, self.max_files = archive, max_bytes, max_files
        self.bytes = self.files = 0

    def add(self, size: int) -> None:
        self.files += 1
        self.bytes += max(0, size)
        if self.files > self.max_files:
            raise _refused(self.archive, f"more than {self.max_files:,} members (raise "
                                 "MODELSAFE_MAX_EXTRACT_FILES if the archive is genuine)")
        if self.bytes > self.max_bytes:
            raise _refused(self.archive, f"it expands to more than {self.max_bytes:,} bytes "
                                 "(raise MODELSAFE_MAX_EXTRACT_BYTES if the archive is genuine)")


def _check_tar(tar: tarfile.TarFile, archive: Path, budget: _Budget) -> None:
    for member in tar.getmembers():
        check_member_name(member.name, archive)
        if member.isdev() or member.isfifo():
            raise _refused(archive, f"member {member.name!r} is a device or FIFO")
        if member.issym() or member.islnk():
            target = member.linkname.replace("\\", "/")
            base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
            parts = (base / target).parts
            depth = 0
            for part in parts:
                depth += -1 if part == ".." else 0 if part == "." else 1
                if depth < 0:
                    break
            if target.startswith("/") or _DRIVE.match(target) or depth < 0:
                raise _refused(archive, f"link {member.name!r} points outside the extraction "
                                     f"folder ({member.linkname!r})")
        budget.add(member.size if member.isfile() else 0)


def safe_extract(archive: Path, dest: Path, max_bytes: int | None = None, max_files: int | None = None) -> None:
    """Extract a tar or zip archive into ``dest`` after checking every member (see the module docstring)."""
    archive, dest = Path(archive), Path(dest)
    budget = _Budget(archive, *extract_limits(max_bytes, max_files))
    dest.mkdir(parents=True, exist_ok=True)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            _check_tar(tar, archive, budget)
            tar.extractall(dest, filter="data")
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            root = dest.resolve()
            for info in zf.infolist():
                check_member_name(info.filename, archive)
                target = (dest / info.filename).resolve()
                if root != target and root not in target.parents:
                    raise _refused(archive, f"member {info.filename!r} leaves {dest}")
                budget.add(info.file_size)
            zf.extractall(dest)
    else:
        raise ModelsafeError(f"{archive} is neither a tar nor a zip archive")
