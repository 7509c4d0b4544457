"""Safe names for files inside an image root, reading regular files only, and file checksums."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from pathlib import Path, PurePosixPath

from protector.limits import MAX_PHOTO_BYTES, FileTooLargeError, check_size

_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(ValueError):
    """A name from a list or archive would leave its root (absolute, `..`, empty)."""


def safe_relative_name(name: str) -> str:
    """Normalize `name` to a relative POSIX path that stays inside its root.

    Raises:
        UnsafePathError: for empty names, absolute paths (POSIX, UNC or drive letter),
            NUL bytes, and any `..` component.

    Example:
        >>> safe_relative_name("./val_256//a.jpg")
        'val_256/a.jpg'
    """
    if "\x00" in name:
        raise UnsafePathError(f"{name!r}: contains a NUL byte")
    text = name.strip().replace("\\", "/")
    if not text:
        raise UnsafePathError(f"{name!r}: empty file name")
    if text.startswith("/") or _WINDOWS_DRIVE.match(text):
        raise UnsafePathError(f"{name!r}: absolute paths are not allowed; give a path relative to the image root")
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"{name!r}: '..' would leave the image root")
    if not parts:
        raise UnsafePathError(f"{name!r}: names no file")
    return "/".join(parts)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so multi-GB archives do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


class NotAFileError(OSError):
    """The path is a FIFO, device, socket or directory: reading it could block or mean nothing."""

    def __init__(self, path: str | Path, kind: str):
        super().__init__(f"{path}: is a {kind}, not a regular file")
        self.kind = kind


def read_regular_file(path: str | Path, max_bytes: int = MAX_PHOTO_BYTES, what: str = "file") -> bytes:
    """The bytes of `path`, which must be a regular file (symlinks to one are followed).

    Opened without blocking and checked on the open descriptor, so a FIFO given as a photo or
    a list fails at once instead of hanging, and nothing can be swapped in between. Its size is
    checked there too, before any byte is read: a 1 TB sparse file fails with one line.

    Raises:
        FileNotFoundError: nothing at `path` (or a dangling or looping link).
        NotAFileError: a FIFO, device, socket or directory.
        FileTooLargeError (a ValueError): more than `max_bytes` bytes (`what` names the kind).
    """
    fd, size = _open_regular(path)
    try:
        check_size(path, size, max_bytes, what)
    except FileTooLargeError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        return file.read()


def regular_file_size(path: str | Path, max_bytes: int, what: str = "file") -> int:
    """The size of `path`, checked to be a regular file of at most `max_bytes`, without reading it.

    For files read by a library from their path (torch.load, h5py, zipfile): the same checks as
    `read_regular_file`, so a FIFO or a huge file fails before the library touches it.

    Raises:
        FileNotFoundError, NotAFileError, FileTooLargeError: as `read_regular_file`.
    """
    fd, size = _open_regular(path)
    os.close(fd)
    check_size(path, size, max_bytes, what)
    return size


def _open_regular(path: str | Path) -> tuple[int, int]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except IsADirectoryError:
        raise NotAFileError(path, "directory") from None
    except OSError as err:
        if err.errno == getattr(os, "ELOOP", None) or isinstance(err, FileNotFoundError):
            raise FileNotFoundError(f"{path}: not found (or a link that leads nowhere)") from None
        raise
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        mode = status.st_mode
        kind = "directory" if stat.S_ISDIR(mode) else "FIFO" if stat.S_ISFIFO(mode) else "device or socket"
        raise NotAFileError(path, kind)
    return fd, status.st_size
