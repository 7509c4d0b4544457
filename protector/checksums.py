"""File checksums: one ChecksumError for every file the project verifies.

The official data files (md5/sha256/size pinned in `data/fetch.py`), the attack-model
checkpoints (sha256 from `architectures.py` or the command line) and downloads all report a
mismatch, or a file with nothing to check it against, with the same exception.
"""

from __future__ import annotations

import re
from pathlib import Path

from protector.paths import sha256_file


class ChecksumError(ValueError):
    """A file's size or digest differs from the expected one, or no digest was there to check.

    Attributes:
        path: the file.
        algorithm: "md5", "sha256" or "size"; None when there was nothing to check against.
        expected, actual: the pinned and the measured value (text).
    """

    def __init__(self, path: str | Path, algorithm: str | None, expected: str | None, actual: str | None,
                 message: str | None = None):
        self.path, self.algorithm, self.expected, self.actual = Path(path), algorithm, expected, actual
        super().__init__(message or f"{path}: {algorithm} mismatch: expected {expected}, got {actual}")


def verify_sha256(path: str | Path, expected: str) -> str:
    """Check that the file's sha256 is `expected` (hex, any case); return it.

    Raises:
        ChecksumError: naming the file, the expected and the actual digest.
    """
    expected = expected.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ChecksumError(path, None, expected, None, f"{path}: {expected!r} is not a sha256 (64 hex digits)")
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(
            path, "sha256", expected, actual,
            f"{path}: sha256 mismatch: expected {expected}, got {actual}. "
            "The file is damaged, incomplete, or not the one expected; download it again.",
        )
    return actual
