"""Output file names: which name and format each protected photo is written under.

A protected photo keeps its relative folder and stem; only the extension follows the
output format, and a run code (the task's submission convention) prefixes the file
name: ``sub/a.png`` -> ``sub/rteam_base_a.jpg``. Names that would collide (``a.jpg``
and ``a.png`` both becoming ``a.jpg``, or names differing only by letter case, which
collide on case-insensitive file systems) are found before anything runs.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import PurePosixPath

from protector.images import FORMAT_FOR_SUFFIX, OUTPUT_FORMATS, SUFFIX_FOR_FORMAT

# Under --format same each input keeps its format (images.FORMAT_FOR_SUFFIX); formats that
# cannot hold the protection losslessly enough (GIF: 256-colour palette) become PNG.
_RUN_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def check_run_code(run_code: str) -> str:
    """Return `run_code` if it is usable in file names (letters, digits, `_`, `-`), else raise ValueError."""
    if not _RUN_CODE.match(run_code):
        raise ValueError(
            f"run code {run_code!r} must start with a letter or digit and contain only letters, digits, '_' and '-' "
            "(it becomes part of every file name and of the zip name), e.g. rteam_base"
        )
    return run_code


def output_format(name: str, fmt: str) -> str:
    """The encoder format ('jpeg', 'png', ...) for input `name` under `--format fmt`."""
    if fmt not in OUTPUT_FORMATS:
        raise ValueError(f"--format must be one of {OUTPUT_FORMATS}, got {fmt!r}")
    if fmt != "same":
        return fmt
    return FORMAT_FOR_SUFFIX.get(PurePosixPath(name).suffix.lower(), "png")


def output_name(name: str, fmt: str, run_code: str | None = None) -> str:
    """Relative output name for the relative input `name`.

    Example:
        >>> output_name("sub/a.png", "jpeg", "rteam_base")
        'sub/rteam_base_a.jpg'
        >>> output_name("b.JPEG", "same")
        'b.JPEG'
    """
    path = PurePosixPath(name)
    encoder = output_format(name, fmt)
    keep_suffix = fmt == "same" and FORMAT_FOR_SUFFIX.get(path.suffix.lower()) == encoder
    suffix = path.suffix if keep_suffix else SUFFIX_FOR_FORMAT[encoder]
    file_name = path.stem + suffix
    if run_code:
        file_name = f"{run_code}_{file_name}"
    return str(path.with_name(file_name))


def find_collisions(outputs: dict[str, str]) -> dict[str, list[str]]:
    """Inputs whose output names collide.

    Args:
        outputs: input name -> output name.

    Returns:
        input name -> the other inputs it collides with, for every input in a collision.
        Names are compared case-insensitively (macOS and Windows file systems are).
    """
    groups: dict[str, list[str]] = defaultdict(list)
    for input_name, out in outputs.items():
        groups[out.casefold()].append(input_name)
    clashes: dict[str, list[str]] = {}
    for members in groups.values():
        if len(members) > 1:
            for member in members:
                clashes[member] = [other for other in members if other != member]
    return clashes
