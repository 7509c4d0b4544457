"""What made the files in an output folder, and the check that nothing else there is
passed off as protected.

``protect-run.json`` in the output folder names the *maker* of its files: the protector
(its file's sha256), every setting that changes the bytes written, and the attack model
when it shapes the protection (a guided protector, ``--refine-steps``). For every file a
run writes (photos and the zip in the folder; the manifest, which lives outside it, under
the entry ``<manifest>``) it keeps the sha256 of the bytes written. A later run into the
folder counts an existing file as its own only when the record has the same maker and the
file still has one of the recorded hashes. Anything else at a name the run would write
(another protector's or other settings' output, the user's original photo, the user's own
file at the manifest's path or zip) stops the run before any work unless ``--overwrite``.

Every write goes through :meth:`Provenance.write` (the zip through :meth:`Provenance.note`),
which appends the hash to this rank's journal ``.protect-run-rank<R>.jsonl`` *before* the
file takes its name: a run killed at any moment leaves no file of its own the next run
cannot account for. Rank zero folds the journals into the record when a run starts and
when it ends.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import torch
from torch import nn

from protector.images import write_atomic
from protector.limits import MAX_LIST_BYTES
from protector.paths import read_regular_file, sha256_file
from protector.protector_protocol import Protector
from protector.settings import ProtectionSettings

RECORD_NAME = "protect-run.json"
# The record's entry for the run's manifest, a file outside the folder (its path is the run's to give).
MANIFEST_ENTRY = "<manifest>"
# Where earlier versions put the manifest: inside the folder, published with the photos.
OLD_MANIFEST_NAME = "manifest.csv"
_JOURNAL_GLOB = ".protect-run-rank*.jsonl"
_FORMAT = 1
_ABOUT = (
    "Written by protector protect. 'maker' is the protector and the settings that made the files "
    "listed under 'files' (name -> sha256 of every version written). A rerun skips an existing "
    "output only if it has the same maker and the file still has a recorded hash; see RELIABILITY.md."
)
_SHOWN = 5  # file names listed in a refusal


class ForeignOutputError(ValueError):
    """Files at names the run would write that it cannot account for; the message names --overwrite."""


def module_sha256(module: nn.Module) -> str:
    """sha256 of a module's class and weights (names, dtypes, shapes, bytes), independent of device."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{key}:{flat.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe_maker(
    settings: ProtectionSettings,
    protector: Protector,
    classifier: nn.Module | None,
    protector_file: Path | None,
) -> dict[str, Any]:
    """The protector, the attack model when it shapes the protection, and every setting that
    changes the bytes of a protected file (:class:`~protector.settings.ProtectionSettings`).

    Args:
        settings: the run's settings.
        protector: the protector as it will run (after --enhance is applied).
        classifier: the attack model, counted only when it shapes the protection.
        protector_file: the file the protector was loaded from (known by its sha256);
            None for the default protector or a module passed in-process (known by its
            class, weights and eps).
    """
    if protector_file is not None:
        made_by: dict[str, Any] = {"sha256": sha256_file(protector_file)}
    else:
        made_by = {"weights_sha256": module_sha256(protector)}
    made_by["eps"] = protector.eps  # also read by `evaluate` (its baselines' budget)
    shapes_with_model = protector.guided or settings.refine_steps > 0
    maker = {
        "protector": made_by,
        "attack_model": module_sha256(classifier) if shapes_with_model and classifier is not None else None,
        **settings.to_record(),
    }
    from protector.appeal_steps import describe as describe_appeal_steps

    steps = describe_appeal_steps(protector.enhancer)
    if steps is not None:  # only when used: records of runs without them keep their digest
        maker["appeal_steps"] = steps
    return maker


def _digest(maker: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(maker, sort_keys=True).encode()).hexdigest()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix} {key}".strip()))
        return flat
    return {prefix: value}


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "…" if len(text) == 64 else text  # a sha256


def differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """'quality 90 -> 80, protector sha256 1a2b… -> 3c4d…' for the settings that differ."""
    before, after = _flatten(old), _flatten(new)
    keys = sorted(set(before) | set(after))
    return ", ".join(f"{k} {_short(before.get(k))} -> {_short(after.get(k))}" for k in keys
                     if before.get(k) != after.get(k))


@dataclass
class Provenance:
    """The record of one output folder, as seen by a run with maker `maker`.

    Use :meth:`open`; rank zero then calls :meth:`check`, :meth:`start` and, at the end,
    :meth:`commit`; every rank writes through :meth:`write`.
    """

    output_dir: Path
    maker: dict[str, Any]
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"kind", "sha256": [...]}
    found_maker: dict[str, Any] | None = None  # the record's maker, when a record was read
    found_files: dict[str, dict[str, Any]] = field(default_factory=dict)  # the record's files, any maker
    unreadable: str | None = None  # why an existing record could not be read
    outside: dict[str, Path] = field(default_factory=dict)  # entry -> path, for files outside the folder

    @classmethod
    def open(cls, output_dir: str | Path, maker: dict[str, Any], outside: dict[str, Path] | None = None) -> Provenance:
        """Read the folder's record and any journals a killed run left; writes nothing.

        `outside` maps record entries (``MANIFEST_ENTRY``) to the paths this run gives them.
        """
        self = cls(Path(output_dir), maker, outside=dict(outside or {}))
        path = self.output_dir / RECORD_NAME
        if path.is_file():
            try:
                record = json.loads(read_regular_file(path, MAX_LIST_BYTES, "run record").decode("utf-8"))
                if record.get("format") != _FORMAT:
                    raise ValueError(f"unknown format {record.get('format')!r}")
                self.found_maker = record["maker"]
                for name, entry in record["files"].items():
                    for sha256 in entry["sha256"]:
                        _add(self.found_files, name, entry["kind"], sha256)
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                self.unreadable = f"{path} cannot be read as a run record ({err})"
        if self.found_maker is not None:
            self._fold(self.found_files, _digest(self.found_maker))
        if self.found_maker == self.maker:
            self.files = self.found_files
        return self

    def _journals(self) -> list[Path]:
        return sorted(self.output_dir.glob(_JOURNAL_GLOB)) if self.output_dir.is_dir() else []

    def _fold(self, files: dict[str, dict[str, Any]], maker_digest: str) -> None:
        """Add the journal lines of `maker_digest` to `files` (lines of any other maker are dropped)."""
        for journal in self._journals():
            try:
                text = read_regular_file(journal, MAX_LIST_BYTES, "run journal").decode("utf-8", errors="replace")
            except (OSError, ValueError):
                continue  # not a journal this code wrote (a FIFO, a huge file): nothing in it is trusted
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    if entry["maker"] == maker_digest:
                        _add(files, entry["name"], entry["kind"], entry["sha256"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: its file never took its name

    def path(self, name: str) -> Path:
        """Where the file of record entry `name` is."""
        return self.outside.get(name, self.output_dir / name)

    def made(self, name: str) -> bool:
        """Whether the file at `name` holds bytes this maker wrote under that name."""
        path = self.path(name)
        entry = self.files.get(name)
        return entry is not None and path.is_file() and sha256_file(path) in entry["sha256"]

    def check(self, names: list[str], overwrite: bool) -> None:
        """Refuse, before any work, when a file at one of `names` was not made by this maker.

        Raises:
            ForeignOutputError: unless `overwrite`; one line naming the files, why, and the ways out.
        """
        if overwrite:
            return
        foreign = [name if name not in self.outside else str(self.path(name))
                   for name in names if self.path(name).exists() and not self.made(name)]
        if self.unreadable is not None:
            foreign.insert(0, RECORD_NAME)
        if not foreign:
            return
        shown = ", ".join(foreign[:_SHOWN]) + (f" and {len(foreign) - _SHOWN} more" if len(foreign) > _SHOWN else "")
        if self.unreadable is not None:
            why = self.unreadable
        elif self.found_maker is None:
            why = f"no {RECORD_NAME} there says what made them"
        elif self.found_maker != self.maker:
            changed = differences(self.found_maker, self.maker)
            why = f"{RECORD_NAME} says another protector or other settings made them ({changed})"
        else:
            why = "they changed since this protector wrote them, or it never wrote them"
        files = "1 existing file was" if len(foreign) == 1 else f"{len(foreign)} existing files were"
        raise ForeignOutputError(
            f"{self.output_dir}: {files} not made by this protector with these settings ({shown}): {why}. "
            "A run only skips and zips files it made itself: pass --overwrite to replace them, "
            "or choose a new --output folder"
        )

    def start(self, overwrite: bool, zip_name: str | None) -> list[Path]:
        """Rank zero, before any file is written: fold the journals into the record, write it,
        and remove the zips earlier runs made here (this run rewrites the manifest, which they
        would no longer match; the zip is made again at the end when the run qualifies), and
        the ``manifest.csv`` an earlier version wrote inside the folder (private: it held the
        originals' paths and labels).

        Returns:
            The zips and old in-folder manifests removed.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        removed = []
        for name, entry in self.found_files.items():
            path = self.output_dir / name
            old_manifest = entry["kind"] == "manifest" and name == OLD_MANIFEST_NAME
            if (entry["kind"] == "zip" or old_manifest) and path.is_file() and sha256_file(path) in entry["sha256"]:
                path.unlink()  # a user's edited copy is theirs: its hash is not recorded, it stays
                removed.append(path)
        self.files.pop(OLD_MANIFEST_NAME, None)
        if overwrite and zip_name is not None and (self.output_dir / zip_name).is_file():
            (self.output_dir / zip_name).unlink()  # replaced: a failed run must not leave it looking current
            removed.append(self.output_dir / zip_name)
        self._save()
        return removed

    def commit(self) -> None:
        """Rank zero, after every rank is done: fold the journals into the record.

        Photos keep every hash (a deterministic protector writes one per name); the
        manifest and the zip change with every run, so only the version on disk is kept.
        """
        self._fold(self.files, _digest(self.maker))
        for name, entry in list(self.files.items()):
            if entry["kind"] != "photo":
                path = self.path(name)
                current = sha256_file(path) if path.is_file() else None
                if current in entry["sha256"]:
                    entry["sha256"] = [current]
                else:
                    del self.files[name]
        self._save()

    def _save(self) -> None:
        record = {"format": _FORMAT, "about": _ABOUT, "maker": self.maker,
                  "files": {name: {"kind": e["kind"], "sha256": sorted(e["sha256"])}
                            for name, e in sorted(self.files.items())}}
        write_atomic(self.output_dir / RECORD_NAME, (json.dumps(record, indent=1) + "\n").encode("utf-8"),
                     overwrite=True)
        for journal in self._journals():
            journal.unlink(missing_ok=True)

    def note(self, name: str, kind: str, sha256: str, rank: int = 0) -> None:
        """Journal that this maker is about to give `name` the bytes with `sha256`."""
        _add(self.files, name, kind, sha256)
        line = json.dumps({"maker": _digest(self.maker), "name": name, "kind": kind, "sha256": sha256}) + "\n"
        # One write() per line on an O_APPEND file: a kill leaves whole lines, or a cut last one.
        fd = os.open(self.output_dir / f".protect-run-rank{rank}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

    def write(self, name: str, data: bytes, kind: str, overwrite: bool, rank: int = 0) -> None:
        """Journal, then write atomically (``FileExistsError`` when there and not `overwrite`)."""
        self.note(name, kind, hashlib.sha256(data).hexdigest(), rank)
        write_atomic(self.path(name), data, overwrite=overwrite)


def _add(files: dict[str, dict[str, Any]], name: str, kind: str, sha256: str) -> None:
    paths = (PurePosixPath(name), PureWindowsPath(name))
    if not name or any(path.is_absolute() or ".." in path.parts for path in paths):
        return  # a record edited to reach outside the folder: start() must never remove such a file
    entry = files.setdefault(name, {"kind": kind, "sha256": []})
    if sha256 not in entry["sha256"]:
        entry["sha256"].append(sha256)


def recorded_maker(folder: str | Path, names: list[str]) -> tuple[dict[str, Any] | None, list[str]]:
    """For a reader of a finished run (``protector evaluate``): what made the files in `folder`.

    Returns:
        The maker its ``protect-run.json`` names (None when there is no readable record),
        and the names among `names` whose bytes that record does not account for (empty
        without a record: nothing is known either way).
    """
    found = Provenance.open(folder, {})
    if found.found_maker is None:
        return None, []
    found.files = found.found_files
    return found.found_maker, [name for name in names if not found.made(name)]
