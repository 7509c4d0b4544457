"""One protection run at a time per output folder: an exclusive, non-blocking lock.

Two runs started at the same moment into one folder would both pass the rerun check and then
overwrite each other's ``protect-run.json`` and manifest. The run holds ``fcntl.flock`` on
``OUTPUT/.protect-run.lock`` from before it reads the folder's record until its last file is
written; a second run refuses at once with one line naming the first (its pid and host). The
kernel drops the lock when the holder dies (even by SIGKILL), so a killed run never blocks the
next. The file is removed on release, so the folder to publish holds only the run's files;
a run that locks a file already unlinked by the previous holder tries again on the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".protect-run.lock"


class FolderBusyError(ValueError):
    """Another run holds the output folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of `folder` (which must exist) for the block.

    Raises:
        FolderBusyError: another process holds it; the message names that process.
    """
    path = Path(folder) / LOCK_NAME
    if fcntl is None:
        yield path
        return
    fd = _acquire(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still holding the lock: a run waiting on this inode retries (see _acquire)
        os.close(fd)  # releases the lock


def _acquire(path: Path) -> int:
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _read_holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderBusyError(
                f"{path.parent}: another protect run ({holder}) is writing into this folder; wait for it to "
                "finish, then run again (it resumes), or choose another --output folder"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)  # the previous holder removed this file while we waited: lock the new one
    raise FolderBusyError(f"{path.parent}: could not take the folder's lock {path}")


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "pid unknown"
