"""Check a submission zip the way the organizers receive it: names, count, format, size, metadata.

The task's convention (../shared/docs/TASK.md): a run code that includes the team name
(``rteam_base``); every test photo renamed ``rteam_base_Places365_val_00014191.jpg``; one
zip per run, ``rteam_base.zip``. Each member is read from the zip as the organizers would
read it: a JPEG, the size of its original (256x256 for the task's images), and nothing in
it that tells more than the pixels (EXIF/GPS, XMP, IPTC, comments).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from protector.data.lists import read_image_list
from protector.data.sources import ImageSource
from protector.images import ImageReadError, read_photo
from protector.limits import MAX_ZIP_BYTES
from protector.paths import NotAFileError, regular_file_size
from protector.protect.naming import check_run_code

TASK_SIZE = (256, 256)
DEFAULT_RUN_CODES = ("protector_unet", "myteam_unet")  # the defaults of older and current make run
# A member larger than this is not a 256 px JPEG; reading it could exhaust memory (zip bomb).
MAX_MEMBER_BYTES = 20 * 1024 * 1024


class SubmissionFileError(ValueError):
    """The path given as the submission zip is not a regular file."""


# Metadata keys Pillow exposes for what must not be published; the ICC profile is colour, allowed.
_LEAKY_INFO = {"exif": "EXIF", "xmp": "XMP", "photoshop": "IPTC/Photoshop", "comment": "a comment"}


@dataclass
class SubmissionCheck:
    """What `check_submission` found; `ok` when `problems` is empty (warnings do not fail it)."""

    zip_path: Path
    run_code: str
    expected: int
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def expected_member(original_name: str, run_code: str) -> str:
    """``Places365_val_00014191.jpg`` -> ``rteam_base_Places365_val_00014191.jpg`` (flat, .jpg)."""
    return f"{run_code}_{PurePosixPath(original_name).stem}.jpg"


def check_submission(zip_path: str | Path, list_path: str | Path, originals: ImageSource | None = None) -> SubmissionCheck:
    """Check `zip_path` against the test list `list_path` (e.g. MEPP19test.csv).

    Args:
        zip_path: ``CODE.zip``; its stem is the run code.
        list_path: the test photos, one per line, in any list format ``read_image_list`` reads.
        originals: where the originals are, to compare each member's size with its original's;
            None expects the task's 256x256.

    Raises:
        FileNotFoundError: no file at `zip_path`.
        SubmissionFileError, FileTooLargeError (ValueErrors): a FIFO or folder at `zip_path`, or a
            file larger than any submission (``limits.MAX_ZIP_BYTES``).
    """
    zip_path = Path(zip_path)
    try:
        regular_file_size(zip_path, MAX_ZIP_BYTES, "submission zip")
    except FileNotFoundError:
        raise FileNotFoundError(f"{zip_path}: submission zip not found") from None
    except NotAFileError as err:
        raise SubmissionFileError(f"{err}; give the submission zip") from None
    run_code = zip_path.stem
    entries = read_image_list(list_path)
    report = SubmissionCheck(zip_path, run_code, expected=len(entries))
    try:
        check_run_code(run_code)
    except ValueError as err:
        report.problems.append(str(err))
        return report
    if run_code in DEFAULT_RUN_CODES or "_" not in run_code:
        report.warnings.append(
            f"run code {run_code!r} does not name a team: the task asks for team_run (e.g. rteam_base); "
            "protect with --run-code TEAM_RUN (make run TEAM=yourteam)"
        )
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        report.problems.append(f"{zip_path}: not a readable zip archive ({err})")
        return report
    with archive:
        _check_members(archive, entries, originals, report)
    return report


def _check_members(archive: zipfile.ZipFile, entries, originals: ImageSource | None, report: SubmissionCheck) -> None:
    wanted = {expected_member(entry.name, report.run_code): entry.name for entry in entries}
    seen: set[str] = set()
    for info in archive.infolist():
        name = info.filename
        if info.is_dir():
            report.problems.append(f"{name}: a folder; the files must sit at the top of the zip")
            continue
        if name in seen:
            report.problems.append(f"{name}: appears twice in the zip")
            continue
        seen.add(name)
        if name not in wanted:
            hint = " (files must sit at the top of the zip)" if PurePosixPath(name).name in wanted else ""
            report.problems.append(f"{name}: not a photo of the test list under the run's naming{hint}")
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            report.problems.append(f"{name}: {info.file_size:,} bytes, far more than a 256 px JPEG; not read")
            continue
        report.checked += 1
        _check_photo(name, archive.read(info), wanted[name], originals, report)
    missing = sorted(set(wanted) - seen)
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        report.problems.append(f"{len(missing)} of {len(wanted)} test photos are missing: {shown}")


def _check_photo(name: str, data: bytes, original: str, originals: ImageSource | None, report: SubmissionCheck) -> None:
    try:
        photo = read_photo(data, name=name)
    except ImageReadError as err:
        report.problems.append(str(err))
        return
    if photo.format != "JPEG":
        report.problems.append(f"{name}: {photo.format} data under a .jpg name; the task's files are JPEG")
    with Image.open(io.BytesIO(data)) as image:
        leaks = [label for key, label in _LEAKY_INFO.items() if image.info.get(key)]
        if len(image.getexif()) and "EXIF" not in leaks:
            leaks.append("EXIF")
    if leaks:
        report.problems.append(f"{name}: carries {', '.join(leaks)} metadata")
    height, width = photo.pixels.shape[:2]
    expected = TASK_SIZE
    if originals is not None:
        try:
            original_pixels = read_photo(originals.read_bytes(original), name=original).pixels
            expected = (original_pixels.shape[1], original_pixels.shape[0])
        except (OSError, ImageReadError) as err:
            report.warnings.append(f"{name}: original not compared ({err})")
    if (width, height) != expected:
        report.problems.append(f"{name}: {width}x{height}, its original is {expected[0]}x{expected[1]}")
