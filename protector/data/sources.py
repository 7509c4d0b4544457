"""Where image bytes come from: a folder, or ``val_256.tar`` read in place.

Names are relative POSIX paths (``Places365_val_00000001.jpg``), the same names the lists
use, so a list entry can be looked up in any source.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import NamedTuple

from protector.images import DECODER_FORMATS, IMAGE_EXTENSIONS, UNREAD_PHOTO_SUFFIXES
from protector.limits import MAX_PHOTO_BYTES, FileTooLargeError, check_size
from protector.paths import UnsafePathError, read_regular_file, safe_relative_name


class SourceError(ValueError):
    """An image source cannot be opened or read (corrupt archive, unsupported kind)."""


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def not_a_file_reason(path: Path) -> str | None:
    """None for a regular file (or a link to one), else what `path` is instead, in words."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link that leads nowhere" if path.is_symlink() else "file not found"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "a symbolic link that loops"
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory, not an image file"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    return f"{kind}, not a regular file"


class ImageSource(ABC):
    """A read-only collection of image files addressed by relative POSIX names.

    Contract: `names()` lists the image files, sorted; `read_bytes(name)` returns a file's
    bytes or raises FileNotFoundError naming the source and the name; `name in source` is
    True exactly when `read_bytes(name)` would succeed. Sources are picklable, so DataLoader
    workers can each hold their own copy.
    """

    @abstractmethod
    def names(self) -> list[str]:
        """Sorted relative POSIX names of the image files."""

    @abstractmethod
    def read_bytes(self, name: str) -> bytes:
        """The bytes of one file; FileNotFoundError naming source and name if absent."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs and error messages."""

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            return self._lookup(safe_relative_name(name)) is not None
        except UnsafePathError:
            return False

    @abstractmethod
    def _lookup(self, name: str) -> object | None:
        """Locate a normalized name; None if this source does not hold it."""

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def _not_found(self, name: str) -> FileNotFoundError:
        return FileNotFoundError(f"{self.describe()}: no file named {name!r}")


class FolderSource(ImageSource):
    """Images in a folder, by path relative to it.

    Hidden files and folders (``.DS_Store``, ``._photo.jpg`` from macOS) are skipped. Symlinks
    to files are followed (a user's own folder), but names with ``..`` or absolute names are
    refused, and directory symlinks are not descended into (no cycles).

    Args:
        root: the folder.
        recursive: also list images in subfolders.

    Example:
        >>> source = FolderSource("photos")
        >>> data = source.read_bytes(source.names()[0])
    """

    def __init__(self, root: str | Path, recursive: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.root}: image folder not found")
        self.recursive = recursive
        self._names: list[str] | None = None
        self._left_out: list[tuple[str, str]] = []

    def names(self) -> list[str]:
        # Listed once: a training run must see the same files from the first epoch to the last.
        if self._names is None:
            self._names = sorted(self._scan())
        return list(self._names)

    def left_out(self) -> list[tuple[str, str]]:
        """(name, why) for what looks like a photo but is not listed by `names()`.

        A photo in a format not read here (``.heic``, ``.avif``, ...), or an image name that is
        not a regular file (FIFO, device, a link that loops or leads nowhere): a protection run
        reports each one instead of leaving it out in silence.
        """
        self.names()
        return list(self._left_out)

    def _scan(self) -> list[str]:
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")] if self.recursive else []
            relative_dir = Path(dirpath).relative_to(self.root)
            for filename in filenames:
                name = (relative_dir / filename).as_posix()
                suffix = Path(filename).suffix.lower()
                if filename.startswith("."):
                    continue
                if suffix in UNREAD_PHOTO_SUFFIXES:
                    self._left_out.append((name, f"{suffix} photos are not read here (formats read: "
                                                 f"{', '.join(DECODER_FORMATS)}); convert it to JPEG or PNG first"))
                elif _is_image_name(filename):
                    why = not_a_file_reason(Path(dirpath) / filename)
                    if why is None:
                        found.append(name)
                    else:
                        self._left_out.append((name, why))
        self._left_out.sort()
        return found

    def _lookup(self, name: str) -> Path | None:
        path = self.root / name
        return path if path.is_file() else None

    def read_bytes(self, name: str) -> bytes:
        try:
            safe = safe_relative_name(name)
        except UnsafePathError as err:
            raise FileNotFoundError(f"{self.describe()}: refusing {name!r}: {err}") from None
        path = self._lookup(safe)
        if path is None:
            reason = not_a_file_reason(self.root / safe)
            if reason not in (None, "file not found"):  # a FIFO, a directory, a dangling link: say so
                raise FileNotFoundError(f"{self.describe()}: {name}: {reason}")
            raise self._not_found(name)
        try:
            return read_regular_file(path, MAX_PHOTO_BYTES, "photo")
        except FileTooLargeError as err:
            raise SourceError(f"{name}: {err.reason}") from None

    def describe(self) -> str:
        return f"folder {self.root}"


class _Member(NamedTuple):
    offset: int  # bytes from the start of the tar file to the member's data
    size: int


class TarSource(ImageSource):
    """Images read in place from an uncompressed tar such as ``val_256.tar``, never extracted.

    The member index is built once (headers only). Reads use the member's byte offset on
    a file handle that is reopened in each process, so DataLoader workers (fork or spawn)
    and threads can read concurrently.

    Safety: only regular file members are indexed. Members with ``..`` or absolute names,
    symlinks, hardlinks, devices and FIFOs are ignored: they are neither listed nor read.

    A single top-level folder shared by every member (``val_256/``) is dropped from the
    names, so ``Places365_val_00000001.jpg`` and ``val_256/Places365_val_00000001.jpg`` both
    work. If a name occurs twice, the later member wins, as with ``tar -x``.

    Args:
        tar_path: an uncompressed ``.tar`` file.

    Example:
        >>> source = TarSource("val_256.tar")
        >>> data = source.read_bytes("Places365_val_00000001.jpg")
    """

    def __init__(self, tar_path: str | Path):
        self.tar_path = Path(tar_path)
        if not self.tar_path.is_file():
            raise FileNotFoundError(f"{self.tar_path}: tar file not found")
        self._members, self.prefix, self.ignored = self._index()
        self._image_names = sorted(n for n in self._members if _is_image_name(n))
        self._fd: int | None = None
        self._fd_pid: int | None = None
        self._lock = threading.Lock()

    def _index(self) -> tuple[dict[str, _Member], str | None, list[str]]:
        members: dict[str, _Member] = {}
        ignored: list[str] = []
        try:
            # "r:" refuses compressed archives: reading members in place needs raw offsets.
            with tarfile.open(self.tar_path, mode="r:") as archive:
                for info in archive:
                    if info.isdir():
                        continue
                    # REGTYPE/AREGTYPE/CONTTYPE store data contiguously; sparse and link
                    # members do not point at plain bytes of their own.
                    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                        ignored.append(info.name)
                        continue
                    try:
                        name = safe_relative_name(info.name)
                    except UnsafePathError:
                        ignored.append(info.name)
                        continue
                    members[name] = _Member(info.offset_data, info.size)
        except tarfile.ReadError as err:
            raise SourceError(
                f"{self.tar_path}: not an uncompressed tar archive ({err}); "
                "decompress it first (val_256.tar is uncompressed as downloaded)"
            ) from None
        except (tarfile.TarError, EOFError) as err:
            raise SourceError(f"{self.tar_path}: corrupt or truncated tar archive ({err})") from None

        prefix = None
        tops = {name.split("/", 1)[0] for name in members}
        if len(tops) == 1 and all("/" in name for name in members):
            prefix = tops.pop()
            members = {name.split("/", 1)[1]: member for name, member in members.items()}
        return members, prefix, ignored

    def names(self) -> list[str]:
        return list(self._image_names)

    def _lookup(self, name: str) -> _Member | None:
        member = self._members.get(name)
        if member is None and self.prefix is not None and name.startswith(self.prefix + "/"):
            member = self._members.get(name[len(self.prefix) + 1 :])
        return member

    def _handle(self) -> int:
        # A descriptor inherited through fork would be shared with the parent; each process
        # opens its own.
        pid = os.getpid()
        if self._fd is None or self._fd_pid != pid:
            self._fd = os.open(self.tar_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._fd_pid = pid
        return self._fd

    def read_bytes(self, name: str) -> bytes:
        try:
            safe = safe_relative_name(name)
        except UnsafePathError as err:
            raise FileNotFoundError(f"{self.describe()}: refusing {name!r}: {err}") from None
        member = self._lookup(safe)
        if member is None:
            raise self._not_found(name)
        try:
            check_size(name, member.size, MAX_PHOTO_BYTES, "photo")
        except FileTooLargeError as err:
            raise SourceError(str(err)) from None
        with self._lock:
            fd = self._handle()
        if hasattr(os, "pread"):
            data = os.pread(fd, member.size, member.offset)  # no shared file position: thread safe
        else:  # Windows
            with self._lock:
                os.lseek(fd, member.offset, os.SEEK_SET)
                data = os.read(fd, member.size)
        if len(data) != member.size:
            raise SourceError(
                f"{self.tar_path}: member {name!r} is truncated ({len(data)} of {member.size} bytes)"
            )
        return data

    def describe(self) -> str:
        inside = f" under {self.prefix}/" if self.prefix else ""
        return f"tar {self.tar_path} ({len(self._image_names):,} images{inside})"

    def close(self) -> None:
        """Close this process's file handle (reopened on the next read)."""
        if self._fd is not None and self._fd_pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._fd_pid = None

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fd"] = None
        state["_fd_pid"] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def open_source(path: str | Path) -> ImageSource:
    """Open a folder as FolderSource or a ``.tar`` file as TarSource.

    Raises:
        FileNotFoundError: the path does not exist.
        SourceError: a file that is not a tar archive.
    """
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image folder or tar file not found")
    if path.is_file() and (path.suffix.lower() == ".tar" or tarfile.is_tarfile(path)):
        return TarSource(path)
    raise SourceError(f"{path}: expected a folder of images or an uncompressed .tar archive")
