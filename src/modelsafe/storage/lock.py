"""A lock on an output folder, so that two modelsafe processes never write into the same folder at once.

The lock is the file ``.modelsafe.lock`` inside the folder, holding the owner's PID. Where the operating
system offers ``flock`` (Linux, macOS) the file is also locked with it, so the kernel releases the lock the
moment its owner dies: a lock file left behind by a killed process is simply taken over. Without ``flock``
a lock file whose PID is no longer alive counts as stale and is taken over."""

from __future__ import annotations

import json
import os
from pathlib import Path

from modelsafe.errors import ModelsafeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".modelsafe.lock"


class FolderBusyError(ModelsafeError):
    """Another live process holds the folder's lock."""


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists (signal 0 probes without sending anything)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def lock_owner(path: Path) -> int | None:
    """The PID written in lock file ``path``, or None when it is missing or unreadable."""
    try:
        pid = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


class FolderLock:
    """``with FolderLock(folder):`` holds ``folder/.modelsafe.lock``; a second holder gets
    :class:`FolderBusyError` naming the owning PID."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _busy(self, pid: int | None) -> FolderBusyError:
        who = f"process {pid}" if pid is not None else "another process"
        return FolderBusyError(f"{self.folder} is in use by {who} (lock file {self.path}); wait for it to "
                               "finish or choose another --out")

    def _try_once(self) -> bool:
        """One attempt; True when the lock is now held, False when a stale lock was cleared (try again)."""
        flags = os.O_RDWR | os.O_CREAT | (0 if fcntl is not None else os.O_EXCL)
        try:
            fd = os.open(self.path, flags, 0o644)
        except FileExistsError:  # no flock: decide by the PID
            pid = lock_owner(self.path)
            if pid is not None and pid_alive(pid):
                raise self._busy(pid) from None
            self.path.unlink(missing_ok=True)
            return False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy(lock_owner(self.path)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous owner removed the file between our open and flock
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid()}).encode())
        self._fd = fd
        return True

    def acquire(self) -> FolderLock:
        if self.held:
            raise self._busy(os.getpid())
        for _ in range(5):
            if self._try_once():
                return self
        raise self._busy(lock_owner(self.path))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:  # noqa: PYI034
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
