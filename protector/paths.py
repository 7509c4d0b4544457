"""Safe names for files inside an image root, and file checksums."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

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
