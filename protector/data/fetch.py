"""The official files of the task: where they come from, where they go, their checksums.

`fetch` downloads what is missing (resuming partial downloads, verifying checksums, renaming
into place only when the bytes are right); `check` says what is present, missing or bad,
and `offline_help` tells a user without network access which URL to fetch by hand and
where to put the file.

Layout under ``root`` (the data folder)::

    val_256.tar                        read in place by protector.data.TarSource
    filelist_places365-standard.tar    the devkit; two files are extracted from it:
    places365_val.txt                  labels of the 36,500 validation images
    categories_places365.txt           the 365 class names
    MEPP18val.csv, MEPP19test.csv ...  the task's lists

and ``weights_dir`` (default ``weights``, relative to the current directory, not to root)
holds ``resnet50_places365.pth.tar``, the attack model.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from tqdm.auto import tqdm

from protector.architectures import REGISTRY
from protector.checksums import ChecksumError
from protector.paths import UnsafePathError, safe_relative_name

_MEPP18 = (
    "https://raw.githubusercontent.com/multimediaeval/2018-Pixel-Privacy-Task/"
    "82b3352c75c3e3bba736fc837864bbead83138b1/"
)
_MEPP19 = (
    "https://raw.githubusercontent.com/multimediaeval/2019-Pixel-Privacy-Task/"
    "e1af8b9bea164706de48cf1d1724f512d94eec27/"
)
_PLACES = "http://data.csail.mit.edu/places/places365/"
_CHUNK_BYTES = 1 << 20
_USER_AGENT = "protector-data-fetch/0.1 (+https://pypi.org/project/protector)"


@dataclass(frozen=True)
class OfficialFile:
    """One file of the task.

    Args:
        name: key in OFFICIAL_FILES and the name users pass to ``--only``.
        dest: destination relative to the data root (or to the weights folder).
        urls: where to download it, tried in order (for an extracted file: its archive's).
        used_for: what in protector reads it.
        md5, sha256: expected hex digests; both None = not pinned (only presence is checked).
        size: expected size in bytes, None if unknown.
        in_weights: the file goes to the weights folder instead of the data root.
        archive: for a file extracted from another official file, that file's name.
        loads_as: for a checkpoint, the architecture it must load into (``checkpoints.
            load_places365_state_dict``) before it is kept or reported present: with no pinned
            checksum, an HTML error page saved under its name is otherwise indistinguishable.
        approx_size: bytes to expect when ``size`` is not pinned, for the offline message's
            total only (never checked).
    """

    name: str
    dest: str
    urls: tuple[str, ...]
    used_for: str
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    in_weights: bool = False
    archive: str | None = None
    loads_as: str | None = None
    approx_size: int | None = None

    @property
    def pinned(self) -> bool:
        return bool(self.md5 or self.sha256)

    def path(self, root: str | Path, weights_dir: str | Path = "weights") -> Path:
        return (Path(weights_dir) if self.in_weights else Path(root)) / self.dest


def _official(*files: OfficialFile) -> dict[str, OfficialFile]:
    return {f.name: f for f in files}


OFFICIAL_FILES: dict[str, OfficialFile] = _official(
    OfficialFile(
        "val_256.tar", "val_256.tar", (_PLACES + "val_256.tar",),
        "the 36,500 Places365 validation images at 256x256 (read in place by TarSource)",
        md5="e27b17d8d44f4af9a78502beb927f808", size=525_158_400,
    ),
    OfficialFile(
        "filelist_places365-standard.tar", "filelist_places365-standard.tar",
        (_PLACES + "filelist_places365-standard.tar",),
        "the Places365 devkit; places365_val.txt and categories_places365.txt come from it",
        md5="35a0585fee1fa656440f3ab298f8479c", approx_size=67_000_000,  # about 64 MiB of text lists
    ),
    OfficialFile(
        "places365_val.txt", "places365_val.txt", (_PLACES + "filelist_places365-standard.tar",),
        "labels of the validation images (fills labels of name-only lists such as MEPP19test)",
        md5="e9f2fd57bfd9d07630173f4e8708e4b1", archive="filelist_places365-standard.tar",
    ),
    OfficialFile(
        "categories_places365.txt", "categories_places365.txt",
        (_PLACES + "filelist_places365-standard.tar",),
        "the 365 class names, for reports",
        md5="06c963b85866bd0649f97cb43dd16673", size=6833, archive="filelist_places365-standard.tar",
    ),
    OfficialFile(
        "MEPP18val.csv", "MEPP18val.csv", (_MEPP18 + "MEPP18labels/MEPP18val.csv",),
        "development set: 3,000 labelled images (training and validation)",
        sha256="226ff261d208f2b264ca0ea2218627f085678570f540fbbb239b763df71c6637", size=106_400,
    ),
    OfficialFile(
        "MEPP18test.csv", "MEPP18test.csv", (_MEPP18 + "MEPP18labels/MEPP18test.csv",),
        "the 2018 test set (3,000 names); MEPP19test is a subset",
        sha256="3e09ef3323e8ef5f5d93664e30100c7ead19877de1a4e0e90077a378a9afe027", size=90_000,
    ),
    OfficialFile(
        "MEPP18test_manual.csv", "MEPP18test_manual.csv",
        (_MEPP18 + "MEPP18labels/MEPP18test_manual.csv",),
        "the 2018 manual subset (60 names)",
        sha256="fa9e2200f21a632ebc71b7b1e82a2808ad08b014663d763ae886827c2b850f2a", size=1800,
    ),
    # The 2019 repository's copy: the 2018 repository has had a version of this file in
    # which /a/amusement_park lacks its index.
    OfficialFile(
        "MEPP18senscats.txt", "MEPP18senscats.txt", (_MEPP19 + "MEPP18senscats.txt",),
        "the 60 privacy-sensitive categories (per-category reports)",
        sha256="03c500f8adbc57e2aac6e6c3faa4ae5675daeda13f3167f999ccfde4b4b84afa", size=1095,
    ),
    OfficialFile(
        "MEPP19test.csv", "MEPP19test.csv", (_MEPP19 + "MEPP19labels/MEPP19test.csv",),
        "the 2019 test set: the 600 images to protect and submit",
        sha256="e3a883a57c5c2a42c134181a9c8206b419e739f496df590aca8083eb37ba401a", size=16_200,
    ),
    OfficialFile(
        "MEPP19test_manual.csv", "MEPP19test_manual.csv",
        (_MEPP19 + "MEPP19labels/MEPP19test_manual.csv",),
        "60 labelled test images, one per category",
        sha256="0b24a7e0d66207c19d28830058aa0fd17bd2b52d5c71c1d9a5c51cc24df33467", size=1828,
    ),
    # No published checksum for the attack model; presence is all that can be checked.
    OfficialFile(
        "resnet50_places365.pth.tar", "resnet50_places365.pth.tar",
        (REGISTRY["resnet50"].url,),
        "the attack model, ResNet50-places365 (protector.classifiers)",
        in_weights=True, loads_as="resnet50", approx_size=98_000_000,  # 24.3 M float32 parameters
    ),
)


class DownloadError(OSError):
    """Files could not be downloaded; the message lists each failure and what to do.

    Attributes: results, the FetchResults of the files `fetch` did get (possibly empty).
    """

    results: tuple = ()


# ------------------------------------------------------------------ checking


def _problem(file: OfficialFile, path: Path) -> ChecksumError | None:
    """What is wrong with the bytes at `path`, or None if they match the pins."""
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        return ChecksumError(path, "size", f"{file.size:,} bytes", f"{size:,} bytes")
    wanted = {name: value for name, value in (("md5", file.md5), ("sha256", file.sha256)) if value}
    if not wanted:
        return _content_problem(file, path)
    digests = {name: hashlib.new(name) for name in wanted}
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK_BYTES):
            for digest in digests.values():
                digest.update(chunk)
    for name, expected in wanted.items():
        actual = digests[name].hexdigest()
        if actual != expected.lower():
            return ChecksumError(path, name, expected, actual)
    return _content_problem(file, path)


def _named(dest: Path, problem: ChecksumError) -> ChecksumError:
    """`problem`, found on a temporary ``.part`` file, told about the file it was meant to become."""
    message = str(problem).replace(str(problem.path), str(dest)) if problem.algorithm == "content" else None
    return ChecksumError(dest, problem.algorithm, problem.expected, problem.actual, message=message)


def _content_problem(file: OfficialFile, path: Path) -> ChecksumError | None:
    """For a checkpoint: why it does not load into its architecture (read with weights_only=True)."""
    if file.loads_as is None:
        return None
    from protector.checkpoints import load_places365_state_dict  # torch: only for checkpoints

    try:
        load_places365_state_dict(path, file.loads_as)
    except ValueError as err:  # CheckpointError, FileTooLargeError
        reason = str(err).removeprefix(f"{path}: ")
        expected = f"a {file.loads_as} Places365 checkpoint"
        return ChecksumError(path, "content", expected, reason,
                             message=f"{path}: not {expected}: {reason}")
    return None


@dataclass(frozen=True)
class FileStatus:
    """The state of one official file on disk.

    state: "ok" (checksum matches), "unpinned" (present, checksum not pinned), "not needed"
    (an archive that is absent or differs, while every file extracted from it is present),
    "missing", "bad" (size or checksum differs; `detail` says how), or "unreadable"
    (present, but reading it fails: `detail` gives the cause).
    """

    name: str
    path: Path
    state: Literal["ok", "unpinned", "not needed", "missing", "bad", "unreadable"]
    detail: str
    file: OfficialFile

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "unpinned", "not needed")


def _status(file: OfficialFile, root: Path, weights_dir: Path) -> FileStatus:
    path = file.path(root, weights_dir)
    if not path.is_file():
        return FileStatus(file.name, path, "missing", "not found", file)
    if not file.pinned and file.size is None and file.loads_as is None:
        return FileStatus(file.name, path, "unpinned", "present, checksum not pinned", file)
    try:
        problem = _problem(file, path)
    except OSError as err:  # EIO, a vanished file: this file's row says so, the others are still checked
        return FileStatus(file.name, path, "unreadable", f"cannot be read ({err.strerror or err})", file)
    if problem is not None:
        return FileStatus(
            file.name, path, "bad", f"{problem.algorithm} expected {problem.expected}, got {problem.actual}", file
        )
    if not file.pinned:
        loads = f", loads as a {file.loads_as} checkpoint" if file.loads_as else ""
        size = ", size ok" if file.size is not None else ""
        return FileStatus(file.name, path, "unpinned", f"present{size}{loads}, checksum not pinned", file)
    algorithm = "md5" if file.md5 else "sha256"
    return FileStatus(file.name, path, "ok", f"{algorithm} ok", file)


def check(root: str | Path, weights_dir: str | Path = "weights") -> list[FileStatus]:
    """The status of every official file under `root` and `weights_dir`, in table order.

    Example:
        >>> [s.name for s in check("data") if not s.ok]
        ['val_256.tar', 'resnet50_places365.pth.tar']
    """
    statuses = [_status(f, Path(root), Path(weights_dir)) for f in OFFICIAL_FILES.values()]
    by_name = {s.name: s for s in statuses}
    return [_unless_not_needed(s, by_name) for s in statuses]


def _members(archive: OfficialFile) -> list[OfficialFile]:
    return [f for f in OFFICIAL_FILES.values() if f.archive == archive.name]


def _unless_not_needed(status: FileStatus, by_name: dict[str, FileStatus]) -> FileStatus:
    """An archive whose extracted files are all present is not needed: its own state does not matter."""
    members = _members(status.file)
    if status.ok or status.state == "unreadable" or not members:
        return status
    if all(m.name in by_name and by_name[m.name].ok for m in members):
        names = " and ".join(m.name for m in members)
        return FileStatus(status.name, status.path, "not needed", f"{status.state}; {names} present", status.file)
    return status


def _pins(file: OfficialFile) -> str:
    return ", ".join(
        p for p in (
            f"{file.size:,} bytes" if file.size else (f"about {file.approx_size / 1e6:,.0f} MB" if file.approx_size else ""),
            f"md5 {file.md5}" if file.md5 else "",
            f"sha256 {file.sha256}" if file.sha256 else "",
        ) if p
    ) or "size and checksum not pinned"


def offline_help(statuses: list[FileStatus]) -> str:
    """What to download by hand for every missing or bad file: URL, where it goes, and the total size.

    A file extracted from an archive is listed under its archive (downloaded once); the
    archive can be kept, or only the listed members extracted from it. Ends with the total
    download size and "then run `make run` again".
    """
    needed = [s for s in statuses if not s.ok]
    if not needed:
        return ""
    # archive or file name -> (the file, its status when it is itself listed, the files to extract from it)
    downloads: dict[str, tuple[OfficialFile, FileStatus | None, list[FileStatus]]] = {}
    for status in needed:
        file = status.file
        if file.archive is None:
            downloads[file.name] = (file, status, downloads.get(file.name, (file, None, []))[2])
        else:
            archive = OFFICIAL_FILES[file.archive]
            downloads.setdefault(archive.name, (archive, None, []))[2].append(status)
    lines: list[str] = []
    total, unknown = 0, False
    for file, own, members in downloads.values():
        size = file.size or file.approx_size
        total += size or 0
        unknown |= size is None
        path = None if own is None else own.path
        lines.append(f"  {file.name}  ({'' if own is None else own.detail + '; '}{_pins(file)})")
        lines.append(f"    download {file.urls[0]}")
        lines.extend(f"    or       {url}" for url in file.urls[1:])
        if path is not None:
            lines.append(f"    save as  {path}")
        if members:
            lines.append("    fetch extracts from it (or extract yourself, by base name, and skip the tar):" if path is not None
                         else "    extract from it (by base name):")
            lines.extend(f"      {PurePosixPath(m.file.dest).name}  ->  save as  {m.path}" for m in members)
    amount = f"{'at least ' if unknown else 'about '}{total / 1e9:.2f} GB"
    head = f"{len(downloads)} download(s), {amount} in all; put each file where it says:"
    return "\n".join([head, *lines, "then run `make run` (or `protector data fetch`) again."])


# ------------------------------------------------------------------ fetching


@dataclass(frozen=True)
class FetchResult:
    """What `fetch` did for one file: "present", "downloaded", "resumed", "extracted", "kept" (bad,
    opted in) or "not needed" (an archive whose extracted files are present)."""

    name: str
    path: Path
    action: Literal["present", "downloaded", "resumed", "extracted", "kept", "not needed"]
    detail: str = ""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _download(
    url: str, part: Path, expected_size: int | None, progress: bool, timeout: float, label: str
) -> Literal["downloaded", "resumed"]:
    """Bring `part` to the full content of `url`, continuing an existing `part` when possible."""
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        offset = 0  # longer than the file can be: not a prefix of it
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset and (expected_size is None or offset == expected_size):
            return "resumed"  # nothing left to send: the .part is complete; the caller verifies it
        raise
    with response:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        resumed = bool(offset) and response.status == 206 and match is not None and int(match.group(1)) == offset
        if not resumed:
            offset = 0  # the server ignored Range (200) or sent another range: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else expected_size
        with open(part, "ab" if resumed else "wb") as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=label, disable=not progress, leave=False,
        ) as bar:
            received = offset
            while chunk := response.read(_CHUNK_BYTES):
                received += len(chunk)
                if expected_size is not None and received > expected_size:
                    raise ChecksumError(part, "size", f"{expected_size:,} bytes", f"more than {expected_size:,} bytes")
                out.write(chunk)
                bar.update(len(chunk))
    # http.client returns short reads quietly when the server hangs up mid-body.
    if total is not None and length and received < total:
        raise ConnectionError(f"connection closed after {received:,} of {total:,} bytes")
    return "resumed" if resumed else "downloaded"


def download_to(url: str, part: Path, progress: bool = True, timeout: float = 60.0, label: str | None = None) -> str:
    """Bring `part` to the content of `url`, resuming a partial `part`: for files outside the
    official table (the attack model's user cache). Returns "downloaded" or "resumed"."""
    return _download(url, part, None, progress, timeout, label or part.name)


def _fetch_download(file: OfficialFile, dest: Path, progress: bool, timeout: float) -> FetchResult:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    for url in file.urls:
        for attempt in range(2):
            try:
                action = _download(url, part, file.size, progress, timeout, file.name)
            except ChecksumError as err:
                part.unlink(missing_ok=True)
                raise ChecksumError(dest, err.algorithm, err.expected, err.actual) from None
            except (OSError, http.client.HTTPException) as err:
                # Network trouble: keep the .part so the next run resumes; try the next URL.
                failures.append(f"{url}: {err}")
                break
            problem = _problem(file, part)
            if problem is None:
                os.replace(part, dest)  # atomic: dest is either absent or complete and verified
                return FetchResult(file.name, dest, action, url)
            part.unlink(missing_ok=True)
            if action == "resumed" and attempt == 0:
                continue  # the old .part may be what was wrong: once more from the first byte
            raise _named(dest, problem)
    raise DownloadError(f"{file.name}: could not download it: " + "; ".join(failures))


def _extract(file: OfficialFile, archive_path: Path, dest: Path) -> FetchResult:
    """Copy one regular member out of `archive_path`, matched by base name; nothing else is written."""
    wanted = PurePosixPath(file.dest).name
    part = dest.with_name(dest.name + ".part")
    try:
        with tarfile.open(archive_path, mode="r:*") as archive:
            for info in archive:
                try:
                    member_name = safe_relative_name(info.name)
                except UnsafePathError:
                    continue
                if info.isreg() and PurePosixPath(member_name).name == wanted:
                    source = archive.extractfile(info)
                    assert source is not None  # regular members always have data
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with source, open(part, "wb") as out:
                        while chunk := source.read(_CHUNK_BYTES):
                            out.write(chunk)
                    break
            else:
                raise FileNotFoundError(f"{archive_path}: has no member named {wanted!r}")
    except (tarfile.TarError, EOFError) as err:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{archive_path}: cannot read the archive ({err})") from None
    problem = _problem(file, part)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise _named(dest, problem)
    os.replace(part, dest)
    return FetchResult(file.name, dest, "extracted", str(archive_path))


def _selected(names: list[str] | None) -> list[OfficialFile]:
    if names is None:
        return list(OFFICIAL_FILES.values())
    unknown = [n for n in names if n not in OFFICIAL_FILES]
    if unknown:
        raise ValueError(f"unknown file(s) {unknown}; choose from {list(OFFICIAL_FILES)}")
    return [f for f in OFFICIAL_FILES.values() if f.name in names]


def fetch(
    root: str | Path,
    names: list[str] | None = None,
    weights_dir: str | Path = "weights",
    progress: bool = True,
    timeout: float = 60.0,
    keep_mismatched: bool = False,
) -> list[FetchResult]:
    """Download (or extract) every official file that is missing or bad, and verify it.

    A file already present with the right checksum is left alone. A download continues from
    ``<dest>.part`` with an HTTP Range request (starting over if the server ignores Range),
    and is renamed to ``dest`` only after its checksum matches.

    Args:
        root: the data folder.
        names: keys of OFFICIAL_FILES to fetch; None = all. An extracted file brings its archive.
        weights_dir: folder for the attack model (relative to the current directory).
        progress: show a tqdm bar per download.
        timeout: seconds to wait on a silent connection.
        keep_mismatched: use a present file whose size or checksum differs instead of
            downloading it again (an explicit opt-in for a re-packed or offline copy; each one
            is reported with action "kept").

    Raises:
        ChecksumError: a downloaded file is corrupt (its .part is deleted, nothing is renamed).
        DownloadError: after trying every file, some could not be downloaded; the message
            says how to fetch each by hand, and ``.results`` lists what did succeed.

    Example:
        >>> fetch("data", names=["MEPP19test.csv"])
        [FetchResult(name='MEPP19test.csv', path=PosixPath('data/MEPP19test.csv'), action='downloaded', ...)]
    """
    root, weights_dir = Path(root), Path(weights_dir)
    results: list[FetchResult] = []
    failed: dict[str, str] = {}  # name -> why; other files are still fetched (partial network access)
    by_hand: list[FileStatus] = []  # what could not be downloaded: the offline message lists them
    for file in _selected(names):
        status = _status(file, root, weights_dir)
        unneeded = _not_needed_archive(file, root, weights_dir, keep_mismatched)
        if unneeded is not None:
            results.append(FetchResult(file.name, status.path, "not needed", unneeded))
            continue
        if status.path.exists() and not status.path.is_file():
            failed[file.name] = f"{status.path}: is a directory (or another non-file); move it away so {file.name} can be saved there"
            continue
        if status.ok:
            results.append(FetchResult(file.name, status.path, "present", status.detail))
            continue
        if status.state == "unreadable":
            failed[file.name] = (f"{status.path}: {status.detail}; move it away (or repair the disk) so "
                                 f"{file.name} can be checked or downloaded again")
            continue
        # A checkpoint that does not load is of no use to anyone: never kept, fetched again.
        if status.state == "bad" and keep_mismatched and not status.detail.startswith("content"):
            results.append(FetchResult(file.name, status.path, "kept", f"checksum differs: {status.detail}"))
            continue
        try:
            if file.archive is None:
                results.append(_fetch_download(file, status.path, progress, timeout))
                continue
            if file.archive in failed:
                failed[file.name] = f"{file.name}: needs {file.archive}, which could not be downloaded"
                by_hand.append(status)
                continue
            archive = OFFICIAL_FILES[file.archive]
            archive_status = _status(archive, root, weights_dir)
            if not archive_status.ok:
                try:
                    results.append(_fetch_download(archive, archive_status.path, progress, timeout))
                except DownloadError as err:
                    failed[archive.name] = str(err)
                    by_hand.append(archive_status)
                    raise
            results.append(_extract(file, archive_status.path, status.path))
        except DownloadError as err:
            if file.name not in failed:
                failed[file.name] = str(err)
                by_hand.append(status)
    if failed:
        message = f"{len(failed)} file(s) not fetched:\n" + "\n".join(f"  {why}" for why in failed.values())
        if by_hand:
            message += "\nWithout network access, fetch them by hand: " + offline_help(by_hand)
        error = DownloadError(message)
        error.results = results  # what did succeed
        raise error
    return results


def _not_needed_archive(file: OfficialFile, root: Path, weights_dir: Path, keep_mismatched: bool) -> str | None:
    """Why an archive need not be fetched (every file extracted from it is usable), or None.

    Offline, the devkit tar is often absent while the two files extracted from it are
    there; those are what protector reads.
    """
    members = _members(file)
    if not members or _status(file, root, weights_dir).ok:
        return None
    for member in members:
        status = _status(member, root, weights_dir)
        if not (status.ok or (keep_mismatched and status.state == "bad")):
            return None
    return f"{' and '.join(m.name for m in members)} present"
