"""The numbers a user reads at the end of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from protector.protect.manifest import ManifestRow


def _short_name(category: str) -> str:
    """'/b/bedroom' -> 'bedroom', '/f/field/wild' -> 'field/wild'."""
    parts = category.strip("/").split("/")
    return "/".join(parts[1:]) if len(parts) > 1 and len(parts[0]) == 1 else category


@dataclass
class RunSummary:
    """Outcome of a protection run.

    Attributes:
        written: files protected and written by this run.
        skipped: outputs already present and kept (re-read and measured all the same).
        failed: inputs that produced no usable output.
        max_delta_8bit: max |saved file - reference| over all outputs, in 8-bit levels
            (decoded from disk: includes JPEG error), None when nothing was measured.
        nan_count: NaN values the protector produced (those photos are not written).
        seconds: wall time of the protection pass.
        failures: (input, error) for every failed input.
        manifest: path of the manifest (outside the output folder: it is private).
        zip_path: the submission zip, when one was written.
        zip_withheld: why the zip asked for was not written (failed inputs), else None.
        zips_removed: zips an earlier run made in the folder, removed because this run
            rewrote the manifest and they would no longer match it (one rewritten by
            this run is not listed).
        manifests_removed: ``manifest.csv`` files an earlier version wrote inside the output
            folder (with the originals' paths and labels), removed as private.
        eps_8bit: the protector's budget in 8-bit levels, for reference.
        nima_before, nima_after: mean NIMA score of the inputs and of their written files,
            over the photos measured both ways (``--nima``), else None.
        nima_measured: how many photos those means cover.
        changed: (clean name, protected name) of every photo the classifier read both ways,
            clean first: the scene it saw before and after (names, or ``class N``).
        less_protected: photos whose manifest ``note`` says they got less protection.
        output: the folder of protected files.
        views: what the protection was computed for (``shared``/``as-is``), None if unknown.
    """

    written: int
    skipped: int
    failed: int
    max_delta_8bit: int | None
    nan_count: int
    seconds: float
    failures: list[tuple[str, str]] = field(default_factory=list)
    manifest: Path | None = None
    zip_path: Path | None = None
    zip_withheld: str | None = None
    zips_removed: list[Path] = field(default_factory=list)
    manifests_removed: list[Path] = field(default_factory=list)
    eps_8bit: float | None = None
    large_budget: str | None = None  # why the budget is outside what was measured (--allow-large-eps)
    nima_before: float | None = None
    nima_after: float | None = None
    nima_measured: int = 0
    changed: list[tuple[str, str]] = field(default_factory=list)
    less_protected: int = 0
    output: Path | None = None
    views: str | None = None

    @property
    def images_per_second(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def from_rows(cls, rows: list[ManifestRow], seconds: float, **extra) -> RunSummary:
        deltas = [r.max_delta_8bit for r in rows if r.max_delta_8bit is not None]
        scored = [(r.nima_original, r.nima_protected) for r in rows
                  if r.nima_original is not None and r.nima_protected is not None]
        return cls(
            written=sum(r.status == "ok" for r in rows),
            skipped=sum(r.status == "skipped" for r in rows),
            failed=sum(r.status == "failed" for r in rows),
            max_delta_8bit=max(deltas) if deltas else None,
            nan_count=sum(r.nan_count or 0 for r in rows),
            seconds=seconds,
            failures=[(r.input, r.error) for r in rows if r.status == "failed"],
            nima_before=sum(b for b, _ in scored) / len(scored) if scored else None,
            nima_after=sum(a for _, a in scored) / len(scored) if scored else None,
            nima_measured=len(scored),
            changed=[(r.clean_top1_name or f"class {r.clean_top1}", r.protected_top1_name or f"class {r.protected_top1}")
                     for r in rows if r.clean_top1 is not None and r.protected_top1 is not None],
            less_protected=sum(bool(r.note) for r in rows),
            **extra,
        )

    def format(self) -> str:
        """Multi-line text for the terminal: plain words first, then the details."""
        done = self.written + self.skipped
        per_photo = f", {self.seconds / self.written:.1f} s per photo" if self.written else ""
        where = f" into {self.output}" if self.output is not None else ""
        lines = [f"Protected {done} photo(s){where} ({self.written} now, {self.skipped} already there, "
                 f"{self.failed} failed{per_photo})."]
        if self.changed:
            moved = [(before, after) for before, after in self.changed if before != after]
            lines.append(f"The scene classifier now reads {len(moved)} of {len(self.changed)} photo(s) as another "
                         "scene (re-read from the saved files):")
            shown = [f"{_short_name(before)} -> {_short_name(after)}" for before, after in moved[:5]]
            if shown:
                lines.append("  " + ", ".join(shown) + (", ..." if len(moved) > 5 else ""))
        if self.eps_8bit is not None:
            measured = "" if self.max_delta_8bit is None or self.max_delta_8bit <= round(self.eps_8bit) else (
                f" (the saved files differ by up to {self.max_delta_8bit} levels: the compression's own error, "
                "as in any re-saved JPEG)")
            lines.append(f"Each pixel was moved at most {self.eps_8bit:.3g} of 255 levels before saving{measured}.")
        if self.views == "shared":
            lines.append("Computed for the attack model seeing the file resized to 224..512 px, "
                         "centre-cropped, or re-encoded by a platform (and as it is, up to --working-side on the shorter "
                         "side); not every view of every photo is fooled (BENCHMARKS.md, \"Views\"), and other "
                         "classifiers are not promised.")
        elif self.views == "classifiers":
            lines.append("Computed for the attack model seeing the file resized to a common classifier input (224, "
                         "256, 288, 320, 384, 448 or 512 px on the shorter side, or 256 then a 224 crop) and as it is "
                         "(photos up to --working-side on the shorter side); other sizes and the full-size file of "
                         "larger photos are covered less (BENCHMARKS.md, \"Views\"), and other "
                         "classifiers are not promised.")
        elif self.views == "as-is":
            lines.append("Protected for a classifier that sees the file exactly as saved (not resized).")
        lines.append("Removed from every file: EXIF (GPS, camera, dates), XMP, IPTC, comments, ICC profile.")
        if self.less_protected:
            lines.append(f"Less protection than the others: {self.less_protected} photo(s) (the manifest's note says why).")
        budget = f" (budget {self.eps_8bit:.3g}; JPEG adds its own error)" if self.eps_8bit is not None else ""
        delta = "n/a" if self.max_delta_8bit is None else f"{self.max_delta_8bit} levels{budget}"
        lines += [
            "",
            f"written: {self.written}   skipped (already there): {self.skipped}   failed: {self.failed}",
            f"max |delta| on the saved files: {delta}",
            f"NaN values: {self.nan_count}",
            *([f"budget: WARNING {self.large_budget} (accepted with --allow-large-eps)"] if self.large_budget else []),
            f"speed: {self.images_per_second:.2f} images/s ({self.written} in {self.seconds:.1f} s)",
        ]
        if self.nima_before is not None and self.nima_after is not None:
            lines.append(f"NIMA mean: {self.nima_before:.3f} -> {self.nima_after:.3f} "
                         f"({self.nima_after - self.nima_before:+.3f}) over {self.nima_measured} photos "
                         "(the written files; per photo in the manifest)")
        if self.manifest is not None:
            lines.append(f"manifest: {self.manifest}")
        if self.zip_path is not None:
            lines.append(f"zip: {self.zip_path}")
        if self.zip_withheld is not None:
            lines.append(f"zip: {self.zip_withheld}")
        lines.extend(f"zip: removed {path}, made by an earlier run: it would not match this run's manifest"
                     for path in self.zips_removed)
        lines.extend(f"manifest: removed {path}, written inside the folder by an earlier version: it named the "
                     "originals and their labels, and the manifest now stays outside the folder"
                     for path in self.manifests_removed)
        if self.failures:
            lines.append(f"failed inputs ({len(self.failures)}):")
            lines.extend(f"  {error or name}" for name, error in self.failures)
        return "\n".join(lines)
