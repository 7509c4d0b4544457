"""Where a command writes: output folders and files checked before any work, write failures in one line.

A user's mistake (`--output` naming a file, a read-only folder) is refused before anything
runs; a failure while writing (a full disk) is turned into an `OutputError` that names the
file and the cause, so a command prints one line instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from protector.images import probe_writable

_HINTS = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EROFS: "choose another place",
    errno.EACCES: "choose a place you can write to",
    errno.EPERM: "choose a place you can write to",
}


class OutputError(ValueError):
    """A result cannot be written where it was asked for; the message names the place and the cause."""


def os_reason(err: OSError) -> str:
    """'No space left on device: free some space' (the cause and what to do), without temporary names."""
    reason = err.strerror or str(err)
    hint = _HINTS.get(err.errno)
    return f"{reason}: {hint}" if hint else reason


def _first_existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def refuse_unusable_folder(path: str | Path, flag: str) -> None:
    """Before any work and without creating anything: refuse a folder path that names a file.

    Raises:
        OutputError: `path`, or the first of its parents that exists, is not a folder.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{flag} {path} is a file, not a folder: give a folder "
                          "(one that does not exist yet is created)")
    existing = _first_existing(path)
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{flag} {path}: {existing} is a file, so no folder can be made there")


def prepare_folder(path: str | Path, flag: str) -> None:
    """Create the folder `path` if needed and make sure files can be written in it.

    Raises:
        OutputError: it names a file, cannot be created, or refuses writes (read-only, full).
    """
    refuse_unusable_folder(path, flag)
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)
    except OSError as err:
        raise OutputError(f"{flag} {path}: cannot write there ({os_reason(err)})") from None


def prepare_file(path: str | Path, flag: str) -> None:
    """Make sure the file `path` can be written (its folder is created if needed); it is not created.

    Raises:
        OutputError: `path` is a folder, or its folder cannot be created or written.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder: give a file name")
    existing = _first_existing(path.parent)
    if existing.exists() and not existing.is_dir():
        raise OutputError(f"{flag} {path}: {existing} is a file, so no folder can be made there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe_writable(path.parent)
    except OSError as err:
        raise OutputError(f"{flag} {path}: cannot write there ({os_reason(err)})") from None


@contextlib.contextmanager
def write_failures(what: str, after: str = "") -> Iterator[None]:
    """Within the block, an OSError becomes `OutputError('WHAT: cannot be written (CAUSE)AFTER')`."""
    try:
        yield
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(f"{what}: cannot be written ({os_reason(err)}){after}") from None


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies within it (links resolved; neither needs to exist)."""
    path, folder = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return path == folder or folder in path.parents


def replace_together(folder: str | Path, write: Callable[[Path], dict[str, Path]]) -> dict[str, Path]:
    """Write a result of several files (a report) so that it replaces the earlier one whole or not at all.

    `write(stage)` writes every file into a hidden staging folder inside `folder` and returns their
    paths by kind. Only when it succeeded are the earlier entries of the same names moved into a
    hidden ``.previous-*`` folder and the new ones renamed into place (renames within one folder:
    no copy), then the earlier ones deleted. A failure while writing (a full disk, Ctrl-C) leaves
    the earlier result untouched and no staging folder; the moment of the swap is a few renames.

    Returns:
        The paths of `write`, moved into `folder`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    try:
        written = write(stage)
        previous = Path(tempfile.mkdtemp(prefix=".previous-", dir=folder))
        entries = sorted(stage.iterdir())
        for entry in entries:
            if os.path.lexists(folder / entry.name):
                os.replace(folder / entry.name, previous / entry.name)
        for entry in entries:
            os.replace(entry, folder / entry.name)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return {kind: folder / path.relative_to(stage) for kind, path in written.items()}
