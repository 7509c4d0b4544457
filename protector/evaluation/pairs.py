"""Match each protected file to its original, the way a submission is matched to the test set.

A protected file is found by the original's folder and stem, after its run-code prefix
is removed: ``Places365_val_00014191.jpg`` <- ``rteam_base_Places365_val_00014191.jpg``
(any image extension, since the format may have changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from protector.data.lists import ListEntry, read_image_list, read_places365_val
from protector.data.sources import FolderSource, ImageSource, open_source

_LIST_SUFFIXES = {".csv", ".txt", ".tsv"}


@dataclass(frozen=True)
class Pair:
    """An original photo and its protected file.

    Attributes:
        name: the original's name in its source (``Places365_val_00014191.jpg``).
        protected: the protected file's path relative to the protected folder.
        label: ground-truth class, None when unknown.
    """

    name: str
    protected: str
    label: int | None


@dataclass
class Pairing:
    """The result of matching: pairs, and what could not be matched (with reasons)."""

    pairs: list[Pair]
    source: ImageSource
    missing: list[str] = field(default_factory=list)  # originals (listed, or all without a list) with no protected file
    unmatched: list[str] = field(default_factory=list)  # protected files with no original
    ambiguous: list[str] = field(default_factory=list)  # an original with two protected files
    unreadable_originals: list[str] = field(default_factory=list)  # "name: cause" of originals that cannot be read
    listed: bool = True  # the originals came from a list (missing ones are errors) or are all of the source


def _key(name: str) -> tuple[str, str]:
    path = PurePosixPath(name)
    return str(path.parent), path.stem


def open_originals(original: str | Path, list_path: str | Path | None = None) -> tuple[ImageSource, list[ListEntry] | None]:
    """The originals' source, and the list of names to evaluate when one is given.

    `original` is a folder or ``.tar`` (optionally restricted by `list_path`), or a list
    file whose names are relative to the list's own folder.
    """
    original = Path(original)
    if original.is_file() and original.suffix.lower() in _LIST_SUFFIXES:
        if list_path is not None:
            raise ValueError(f"--original {original} is already a list; drop --list or point --original at the images")
        return FolderSource(original.parent), read_image_list(original)
    source = open_source(original)
    return source, (read_image_list(list_path) if list_path is not None else None)


def pair_files(
    protected_dir: str | Path,
    source: ImageSource,
    entries: list[ListEntry] | None = None,
    run_code: str | None = None,
    labels: dict[str, int] | None = None,
) -> Pairing:
    """Match the protected files in `protected_dir` to originals in `source`.

    Args:
        protected_dir: the run's output folder (``manifest.csv`` and the zip are ignored:
            only image files count).
        source: where the originals are.
        entries: the originals to evaluate (a list file); None evaluates every protected
            file that has an original, and every original without a protected file is
            reported in ``missing`` (so a folder missing 3 of 4 files is never scored silently).
        run_code: the prefix ``CODE_`` every protected file name carries; files without it
            are reported as unmatched.
        labels: ground truth by name (``places365_val.txt``); fills in labels the list lacks.
    """
    prefix = f"{run_code}_" if run_code else ""
    by_key: dict[tuple[str, str], list[str]] = {}
    unmatched: list[str] = []
    for rel in FolderSource(protected_dir, recursive=True).names():
        path = PurePosixPath(rel)
        if prefix and not path.name.startswith(prefix):
            unmatched.append(rel)
            continue
        stem = path.stem[len(prefix):]
        by_key.setdefault((str(path.parent), stem), []).append(rel)

    unprotected: list[str] = []
    listed = entries is not None
    if entries is None:
        originals_by_key: dict[tuple[str, str], str] = {}
        for name in source.names():
            if originals_by_key.setdefault(_key(name), name) == name and _key(name) not in by_key:
                unprotected.append(name)
        entries = []
        for key, files in sorted(by_key.items()):
            if key in originals_by_key:
                entries.append(ListEntry(originals_by_key[key], None))
            else:
                unmatched.extend(files)

    pairing = Pairing(pairs=[], source=source, unmatched=unmatched, missing=sorted(unprotected), listed=listed)
    for entry in entries:
        files = by_key.get(_key(entry.name), [])
        label = entry.label
        if label is None and labels:
            label = labels.get(entry.name, labels.get(PurePosixPath(entry.name).name))
        if not files:
            pairing.missing.append(entry.name)
        elif len(files) > 1:
            pairing.ambiguous.append(f"{entry.name}: {', '.join(files)}")
        elif entry.name not in source:
            pairing.missing.append(f"{entry.name} (original not in {source.describe()})")
        else:
            pairing.pairs.append(Pair(entry.name, files[0], label))
    return pairing


def read_labels(path: str | Path | None) -> dict[str, int] | None:
    """Ground truth by image name from ``places365_val.txt``, or any list with labels."""
    if path is None:
        return None
    try:
        return read_places365_val(path)
    except ValueError:
        return {entry.name: entry.label for entry in read_image_list(path) if entry.label is not None}
