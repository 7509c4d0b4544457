"""Split an appeal protector's NIMA change into the edit's share and the perturbation's.

An appeal protector (:mod:`protector.enhance`) publishes ``edit(x) + perturbation``, with the
budget measured from the edit. The protected file alone cannot say which part moved NIMA, so
the edit is recomputed here from the original, the way ``protect`` computed it: the
protector's ``reference(x)`` on the whole photo at full size, at the strength the protected
folder's ``protect-run.json`` records. Then, per photo:

- edit change = NIMA(edit) - NIMA(original),
- perturbation change = NIMA(protected file) - NIMA(edit) (the perturbation and the file's
  encoding, e.g. JPEG, together: that is what the file adds to the edit),

and PSNR/SSIM/max |delta| of the protected file against the edit, the budget's reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

import numpy as np
import torch
from torch import nn

from protector.evaluation.fidelity import Fidelity, fidelity
from protector.evaluation.scoring import nima_mean_std, run_batched
from protector.data.sources import ImageSource
from protector.evaluation.records import RunEval
from protector.settings import ProtectionSettings
from protector.images import read_photo, to_uint8
from protector.paths import sha256_file

Edit = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class PhotoSplit:
    """One photo: NIMA means of the original, the edit alone and the protected file, and the
    protected file's fidelity against the edit (None without NIMA for the scores)."""

    nima_original: float | None
    nima_edit: float | None
    nima_protected: float | None
    against_edit: Fidelity


@dataclass
class EditSplit:
    """The recomputed edit of a run and, per photo name, its split.

    Attributes:
        protector: the --protector file the edit comes from.
        strength: the enhancer strength used (from protect-run.json, else 1).
        strength_source: where ``strength`` comes from, as the report prints it.
        edit: recomputes the edit of decoded (H, W, 3) uint8 photos (the gallery calls it).
        photos: per original name.
        warnings: reasons to doubt that this is the edit the files were made with.
    """

    protector: str
    strength: float
    strength_source: str
    edit: Edit
    photos: dict[str, PhotoSplit] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """Means over the photos, as written to results.json."""
        splits = list(self.photos.values())
        scored = [s for s in splits if None not in (s.nima_original, s.nima_edit, s.nima_protected)]
        finite = [s.against_edit.psnr for s in splits if np.isfinite(s.against_edit.psnr)]
        ssim = [s.against_edit.ssim for s in splits if s.against_edit.ssim is not None]
        out = {
            "protector": self.protector, "strength": self.strength, "strength_source": self.strength_source,
            "n": len(splits),
            "psnr_vs_edit_mean": fmean(finite) if finite else None,
            "ssim_vs_edit_mean": fmean(ssim) if ssim else None,
            "max_delta_8bit_vs_edit": max((s.against_edit.max_delta_8bit for s in splits), default=None),
            "nima_original_mean": None, "nima_edit_mean": None, "nima_protected_mean": None,
            "edit_change_mean": None, "perturbation_change_mean": None,
        }
        if scored:
            out.update(
                nima_original_mean=fmean(s.nima_original for s in scored),
                nima_edit_mean=fmean(s.nima_edit for s in scored),
                nima_protected_mean=fmean(s.nima_protected for s in scored),
                edit_change_mean=fmean(s.nima_edit - s.nima_original for s in scored),
                perturbation_change_mean=fmean(s.nima_protected - s.nima_edit for s in scored),
            )
        return out

    def measure(self, run: RunEval, source: ImageSource, nima: nn.Module | None, device: torch.device,
                batch_size: int) -> None:
        """Recompute the edit of every photo of `run` and record its split.

        NIMA of the originals and of the protected files comes from `run`'s records; the
        originals and files are decoded again (from `source` and the run's folder).
        """
        for start in range(0, len(run.images), batch_size * 4):
            chunk = run.images[start : start + batch_size * 4]
            originals = [read_photo(source.read_bytes(im.name), name=im.name).pixels for im in chunk]
            edits = self.edit(originals)
            scores = nima_mean_std(nima, edits, device, batch_size) if nima is not None else [None] * len(chunk)
            for im, edit, score in zip(chunk, edits, scores):
                protected = read_photo(Path(run.folder) / im.file).pixels
                self.photos[im.name] = PhotoSplit(
                    im.nima_clean[0] if im.nima_clean else None, score[0] if score else None,
                    im.nima_protected[0] if im.nima_protected else None, fidelity(edit, protected))


def recorded_strength(protected_by: dict | None) -> tuple[float, str]:
    """The enhancer strength the protected files were made with, and where that comes from.

    A protect-run.json records the settings' ``edit_strength`` (None: no edit, ``--enhance
    off`` or a protector without an enhancer); without a record the trained strength, 1, is assumed.
    """
    if protected_by is None:
        return 1.0, "default (no protect-run.json in the protected folder)"
    strength = ProtectionSettings.from_record(protected_by).edit_strength
    if strength is None:
        return 0.0, "protect-run.json (no edit: --enhance off, or a protector without an enhancer)"
    return float(strength), "protect-run.json"


def load_edit_split(path: str | Path, protected_by: dict | None, device: torch.device,
                    batch_size: int) -> EditSplit | None:
    """The edit of the appeal protector at `path`; None for a protector without an enhancer.

    Raises:
        FileNotFoundError, protector.export.ProtectorFileError: not a readable protector file.
    """
    from protector.export import load_protector

    protector = load_protector(path).to(device)
    if protector.enhancer is None:
        return None
    strength, source = recorded_strength(protected_by)
    protector.enhancer.strength = strength

    def edit(originals: list[np.ndarray]) -> list[np.ndarray]:
        # Whole photos at full size, as protect computes the reference (never per tile).
        rows = run_batched(protector.reference, originals, device, batch_size)
        return [to_uint8(row) for row in rows]

    split = EditSplit(str(path), strength, source, edit)
    recorded = ((protected_by or {}).get("protector") or {}).get("sha256")
    if recorded is not None and recorded != sha256_file(Path(path)):
        split.warnings.append(f"--protector {path} is not the protector protect-run.json says made the files "
                              f"(sha256 {recorded[:12]}…): the edit split is that of another edit")
    return split


__all__ = ["EditSplit", "PhotoSplit", "load_edit_split", "recorded_strength"]
