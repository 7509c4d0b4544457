"""The task's submission archive: ``<run_code>.zip`` holding the run's protected files."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
import zipfile
from pathlib import Path

from protector.paths import sha256_file

# A fixed timestamp makes the archive a function of the files alone: reruns give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def write_submission_zip(
    zip_path: str | Path,
    output_dir: str | Path,
    names: list[str],
    before_rename: Callable[[str], None] | None = None,
) -> Path:
    """Write a zip of the files `names` (relative to `output_dir`), atomically.

    Members are stored (JPEGs do not compress further) under their relative names, sorted,
    with a fixed timestamp, so the same files give a byte-identical archive.
    `before_rename` gets the archive's sha256 before it takes its name (the run record
    journals it there, so a kill right after never leaves a zip the record does not know).

    Example:
        >>> write_submission_zip("out/rteam_base.zip", "out", ["rteam_base_a.jpg"])  # doctest: +SKIP
    """
    zip_path, output_dir = Path(zip_path), Path(output_dir)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".tmp", dir=zip_path.parent)
    umask = os.umask(0)
    os.umask(umask)
    if hasattr(os, "fchmod"):  # POSIX; mkstemp's 0600 would hide the archive from the user's group
        os.fchmod(fd, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as archive:
            for name in sorted(set(names)):
                info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_STORED
                archive.writestr(info, (output_dir / name).read_bytes())
        if before_rename is not None:
            before_rename(sha256_file(tmp_name))
        os.replace(tmp_name, zip_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return zip_path
