"""How much a file handed to a command may cost before it is read: bytes and decoded pixels.

Every file a user or a stranger hands a command (photos, lists, archives, checkpoints, weights)
is measured on its open descriptor before its bytes are read, so a 1 TB sparse file named
``.jpg`` fails alone with one line instead of a ``MemoryError`` that ends the run. Standard
library only. Each bound is many times what the task's real files need (the numbers and why
are in RELIABILITY.md, section 11).
"""

from __future__ import annotations

MIB = 1024 * 1024
GIB = 1024 * MIB

# A photo file: the largest a camera writes is a 100 MP 16-bit TIFF, 600 MB uncompressed;
# 1 GiB holds it with room, and is what a read into memory may cost at most.
MAX_PHOTO_BYTES = 1 * GIB
# A list or label file: the largest the task uses is places365_val.txt (1.1 MB); 64 MiB is
# 50 times that (Places365's full training list, 1.8 M lines, is 60 MB).
MAX_LIST_BYTES = 64 * MIB
# A weights file (attack-model checkpoint, protector.pt, NIMA weights): the largest official
# Places365 checkpoint (DenseNet161) is 115 MB, ResNet50 98 MB, a protector.pt a few MB.
MAX_WEIGHTS_BYTES = 1 * GIB
# A submission zip: 600 photos of 256 px JPEG are about 12 MB; 1 GiB is 80 times that.
MAX_ZIP_BYTES = 1 * GIB

# Decoded pixels per byte of file, above LARGE_PHOTO_PIXELS. The 100 full-size photos of
# ../shared/fullsize store 1.5 to 5.1 pixels a byte; a JPEG of one colour 64 (RGB) to 85 (gray),
# an RGB PNG of one colour 284 (measured, BENCHMARKS.md). A file that claims more is built to cost
# minutes and gigabytes of decoding and protection from a few kilobytes (a lossless WebP of one
# colour holds 64 MP in 2.5 KB).
MAX_PIXELS_PER_BYTE = 1024
# At or below this size (4 MP, `protect --tile-max-pixels`: a photo protected in one pass, no
# tiles) any ratio is accepted: decoding costs a fraction of a second, and flat synthetic images
# are legitimate.
LARGE_PHOTO_PIXELS = 4 * 1024 * 1024


class FileTooLargeError(ValueError):
    """A file is larger than the bound for its kind; the message names the file, its size and the bound.

    Attributes: reason, the message without the file's name (for callers that name it their way).
    """

    def __init__(self, path: object, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def check_size(path: object, size: int, limit: int, what: str) -> None:
    """Raise FileTooLargeError when `size` bytes exceed `limit` for a file of kind `what`."""
    if size > limit:
        raise FileTooLargeError(
            path, f"{_human(size)} is more than any {what} this command reads ({_human(limit)} at most); not read"
        )


def pixel_cost_problem(width: int, height: int, file_bytes: int) -> str | None:
    """Why a photo's claimed size is not plausible for its file size, or None when it is."""
    pixels = width * height
    if pixels <= LARGE_PHOTO_PIXELS or file_bytes <= 0:
        return None
    per_byte = pixels / file_bytes
    if per_byte <= MAX_PIXELS_PER_BYTE:
        return None
    return (f"claims {width}x{height} = {pixels:,} pixels from a file of {file_bytes:,} bytes "
            f"({per_byte:,.0f} pixels a byte; a photo holds at most {MAX_PIXELS_PER_BYTE:,}): a file built to cost "
            "minutes and gigabytes to decode, not read")


def _human(size: int) -> str:
    for unit, scale in (("TiB", 1024 * GIB), ("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size:,} bytes"
