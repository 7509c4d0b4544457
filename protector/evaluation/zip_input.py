"""`evaluate --protected SUBMISSION.zip`: score the zip the organizers receive, as they would.

The members are extracted into a temporary folder (regular files with safe relative names
only, bounded in number and size) and evaluated there. When the zip lies in the folder that
``protector protect`` wrote it into, that folder's run record (``protect-run.json``) goes
along, so the report still knows the budget and checks that each member is what protect wrote.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from protector.images import IMAGE_EXTENSIONS
from protector.paths import UnsafePathError, safe_relative_name
from protector.protect.provenance import RECORD_NAME

MAX_MEMBERS = 100_000
MAX_TOTAL_BYTES = 8 << 30  # 8 GiB uncompressed: a submission of 600 JPEGs is a few dozen MB


class ZipInputError(ValueError):
    """A zip given as --protected cannot be evaluated; the message names the file and the cause."""


@contextlib.contextmanager
def protected_folder(path: Path) -> Iterator[Path]:
    """The folder to evaluate: `path` itself, or the members of the zip `path` in a temporary folder."""
    if path.is_dir() or not path.is_file():
        yield path  # a folder, or a missing path: the evaluation's own checks name it
        return
    if not zipfile.is_zipfile(path):
        raise ZipInputError(f"{path}: --protected is a file but not a zip; give the output folder or the submission zip")
    with tempfile.TemporaryDirectory(prefix="protector-evaluate-") as scratch:
        folder = Path(scratch) / path.stem
        folder.mkdir()
        _extract(path, folder)
        record = path.parent / RECORD_NAME
        if record.is_file():
            shutil.copyfile(record, folder / RECORD_NAME)
        yield folder


def submission_run_code(path: Path) -> str | None:
    """The run code that a submission zip's name gives: the task's ``TEAM_RUN.zip`` holds
    ``TEAM_RUN_NAME.jpg``, so the zip's stem when every image in it is named so; None for a folder or any other zip (then the names are matched as they are)."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            names = [Path(info.filename).name for info in archive.infolist()
                     if Path(info.filename).suffix.lower() in IMAGE_EXTENSIONS]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError):
        return None  # protected_folder names the fault
    prefix = f"{path.stem}_"
    return path.stem if names and all(name.startswith(prefix) for name in names) else None


def _extract(path: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) > MAX_MEMBERS:
                raise ZipInputError(f"{path}: {len(members):,} members, more than {MAX_MEMBERS:,}")
            total = sum(info.file_size for info in members)
            if total > MAX_TOTAL_BYTES:
                raise ZipInputError(f"{path}: {total:,} bytes uncompressed, more than {MAX_TOTAL_BYTES:,}")
            for info in members:
                try:
                    name = safe_relative_name(info.filename)
                except UnsafePathError as err:
                    raise ZipInputError(f"{path}: member {info.filename!r} has an unsafe name ({err})") from None
                target = folder / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as err:
        raise ZipInputError(f"{path}: cannot read the zip ({err})") from None
