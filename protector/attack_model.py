"""The attack model for people protecting their own photos: fetched once, then checked every time.

`protector protect PHOTOS` needs the scene classifier it protects against (ResNet50-places365,
the task's attack model). Nobody should have to know where it lives: on first use it is
downloaded from CSAIL into a user cache (``$PROTECTOR_CACHE``, else
``$XDG_CACHE_HOME/protector``, else ``~/.cache/protector``), checked to be a loadable
checkpoint of that architecture, and its sha256 is recorded beside it. Every later use
verifies the file against that record (or the registry's pinned digest), so a file that
changed since is refused, and everything works offline once it is there. With
``PROTECTOR_OFFLINE=1`` nothing is downloaded (the message says what to fetch instead). No sha256 of the
official file is published: the first download is trusted, and the record says so.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path

from protector.architectures import get_architecture
from protector.checksums import ChecksumError
from protector.checkpoints import CheckpointError, load_places365_state_dict
from protector.paths import sha256_file

DEFAULT_ARCH = "resnet50"
# The 365 class names, for summaries that say "bedroom -> office" (md5 from ../shared/docs/TASK.md).
CATEGORIES_URL = "https://raw.githubusercontent.com/csailvision/places365/master/categories_places365.txt"
CATEGORIES_MD5 = "06c963b85866bd0649f97cb43dd16673"


class AttackModelUnavailable(FileNotFoundError):
    """The attack model is not in the cache and cannot be downloaded; the message says what to fetch and where."""


def offline() -> bool:
    """``PROTECTOR_OFFLINE=1``: never download (like ``HF_HUB_OFFLINE``)."""
    return os.environ.get("PROTECTOR_OFFLINE", "").lower() in ("1", "true", "yes")


def cache_dir() -> Path:
    """Where downloaded attack models live."""
    if os.environ.get("PROTECTOR_CACHE"):
        return Path(os.environ["PROTECTOR_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "protector"


def cached_attack_model(
    arch: str = DEFAULT_ARCH,
    directory: str | Path | None = None,
    url: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> tuple[Path, str]:
    """The cached checkpoint of ``arch`` and its verified sha256, downloading it on first use.

    Args:
        arch: a registered architecture (``resnet50`` is the task's attack model).
        directory: the cache folder; default :func:`cache_dir`.
        url: where to download from; default the architecture's CSAIL URL.
        progress: show a download progress bar.
        timeout: seconds to wait for the server.

    Raises:
        AttackModelUnavailable: not cached and the download failed (offline): the message
            names the URL, the file to put in place, and the flag to use instead.
        ChecksumError: the cached file differs from the digest recorded when it was fetched
            (or from the registry's pinned one).
        CheckpointError: the downloaded or cached file is not a checkpoint of ``arch``.
    """
    architecture = get_architecture(arch)
    folder = Path(directory) if directory is not None else cache_dir()
    path = folder / architecture.filename
    record = path.with_name(path.name + ".sha256")
    if not path.is_file():
        _download_verified(arch, url or architecture.url, path, progress, timeout)
    digest = sha256_file(path)
    expected = architecture.sha256 or (record.read_text().split()[0] if record.is_file() else None)
    if expected is not None and expected != digest:
        raise ChecksumError(path, "sha256", expected, digest)
    if expected is None:  # placed there by hand: checked once, then recorded like a download
        load_places365_state_dict(path, arch)
    if not record.is_file():
        record.write_text(f"{digest}  {path.name}\n")
    return path, digest


def _download_verified(arch: str, url: str, path: Path, progress: bool, timeout: float) -> None:
    from protector.data.fetch import download_to  # urllib and tqdm only when a download is needed

    part = path.with_name(path.name + ".part")
    try:
        if offline():
            raise OSError("PROTECTOR_OFFLINE is set")
        path.parent.mkdir(parents=True, exist_ok=True)
        download_to(url, part, progress=progress, timeout=timeout, label=path.name)
    except (OSError, http.client.HTTPException) as err:
        raise AttackModelUnavailable(
            f"the attack model {path.name} is not cached and could not be downloaded ({err}).\n"
            f"  Download {url}\n  and put it at {path}\n"
            f"  (or pass --classifier {arch} --classifier-checkpoint FILE), then run the same command again."
        ) from None
    try:
        load_places365_state_dict(part, arch)  # an HTML error page or another model is not kept
    except (CheckpointError, ChecksumError):
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)


def cached_categories(directory: str | Path | None = None, url: str = CATEGORIES_URL,
                      timeout: float = 20.0) -> Path | None:
    """``categories_places365.txt`` in the cache, downloaded on first use; None when it cannot be
    had (the names are a nicety: a summary then says ``class 52``)."""
    import hashlib

    path = (Path(directory) if directory is not None else cache_dir()) / "categories_places365.txt"
    if not path.is_file() and offline():
        return None
    if not path.is_file():
        from protector.data.fetch import download_to

        part = path.with_name(path.name + ".part")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            download_to(url, part, progress=False, timeout=timeout)
        except (OSError, http.client.HTTPException):
            part.unlink(missing_ok=True)
            return None
        if hashlib.md5(part.read_bytes()).hexdigest() != CATEGORIES_MD5:
            part.unlink(missing_ok=True)
            return None
        os.replace(part, path)
    return path
