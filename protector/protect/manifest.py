"""The run's manifest: one CSV row per input saying what happened to it.

It holds each photo's original path, its scene label and the classifier's clean and protected
predictions: exactly what the protection hides. So it never goes into the folder of protected
photos (which a user uploads) nor into the zip: by default it is ``OUT.manifest.csv`` beside the
output folder ``OUT`` (``--manifest`` puts it elsewhere, outside the folder).

Each process (rank) writes its own shard (``.OUT.manifest.csv.rank<R>.csv``, beside the
manifest) while predicting; rank zero merges the shards into the manifest in plan order when
every rank is done.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from protector.images import write_atomic


@dataclass
class ManifestRow:
    """What happened to one input.

    ``status`` is ``ok`` (protected and written now), ``skipped`` (its output was already
    there and was kept; it is still re-read and measured) or ``failed`` (``error`` says
    why). ``protected_top1`` is the classifier's prediction on the file as written,
    decoded from disk. ``max_delta_8bit`` is max |written - reference| in 8-bit levels, the
    reference being the photo the budget is measured from (the input, or the edited photo of
    an appeal protector). ``nima_original`` and ``nima_protected`` (with ``--nima``) are the
    NIMA mean scores of the input and of the file as written. ``classified_at`` is the size
    (WxH) the classifier saw both at: the file's own, or the working copy of a photo protected
    at a working scale. ``note`` says when a photo got less protection than the run's setting
    (e.g. its refine steps were skipped).
    """

    index: int
    input: str
    output: str = ""
    status: str = "failed"
    error: str = ""
    sha256: str = ""
    width: int | None = None
    height: int | None = None
    label: int | None = None
    clean_top1: int | None = None
    clean_top1_name: str = ""
    protected_top1: int | None = None
    protected_top1_name: str = ""
    max_delta_8bit: int | None = None
    nan_count: int | None = None
    nima_original: float | None = None
    nima_protected: float | None = None
    classified_at: str = ""
    note: str = ""


COLUMNS = [f.name for f in fields(ManifestRow)]
_INT_COLUMNS = {f.name for f in fields(ManifestRow) if "int" in str(f.type)}
_FLOAT_COLUMNS = {f.name for f in fields(ManifestRow) if "float" in str(f.type)}


def manifest_bytes(rows: list[ManifestRow]) -> bytes:
    """The CSV of `rows`, sorted by index (what :func:`write_manifest` writes)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r.index):
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(row).items()})
    # Inputs are made printable while planning; a non-UTF-8 folder name inside a message must
    # still not cost the whole manifest.
    return buffer.getvalue().encode("utf-8", "backslashreplace")


def write_manifest(path: str | Path, rows: list[ManifestRow]) -> None:
    """Write rows (sorted by index) as CSV, atomically, replacing an older manifest."""
    write_atomic(path, manifest_bytes(rows), overwrite=True)


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Rows of a manifest written by :func:`write_manifest`."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for record in csv.DictReader(f):
            values = {key: _parse(key, value) for key, value in record.items() if key in COLUMNS}
            rows.append(ManifestRow(**values))
    return rows


def _parse(column: str, value: str) -> int | float | str | None:
    if column in _INT_COLUMNS:
        return int(value) if value != "" else None
    if column in _FLOAT_COLUMNS:
        return float(value) if value != "" else None
    return value


def default_manifest_path(output_dir: str | Path) -> Path:
    """``OUT.manifest.csv`` beside the output folder ``OUT``: outside what a user publishes."""
    folder = Path(os.path.abspath(output_dir))
    return folder.parent / f"{folder.name}.manifest.csv"


def shard_path(manifest: Path, rank: int) -> Path:
    return manifest.parent / f".{manifest.name}.rank{rank}.csv"


def remove_shards(manifest: Path) -> None:
    for shard in manifest.parent.glob(f".{manifest.name}.rank*.csv"):
        shard.unlink(missing_ok=True)


def merge_shards(manifest: Path, world_size: int, extra_rows: list[ManifestRow]) -> list[ManifestRow]:
    """Read every rank's shard, add `extra_rows` (failures found while planning), delete the shards."""
    rows = list(extra_rows)
    for rank in range(world_size):
        shard = shard_path(manifest, rank)
        if not shard.exists():
            raise FileNotFoundError(f"{shard}: rank {rank} wrote no manifest shard; did it crash?")
        rows.extend(read_manifest(shard))
    remove_shards(manifest)
    return sorted(rows, key=lambda r: r.index)
