"""Save each protected batch as files, then re-read every file to check and classify it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from protector.images import ImageReadError, encode_photo, read_photo, to_tensor, to_uint8
from protector.outputs import os_reason, write_failures
from protector.paths import sha256_file
from protector.protect.manifest import ManifestRow, manifest_bytes, merge_shards, shard_path, write_manifest
from protector.protect.plan import Plan, PlannedPhoto
from protector.protect.provenance import MANIFEST_ENTRY, Provenance


class ProtectedImageWriter(BasePredictionWriter):
    """Writes the protected photos of each batch on the rank that computed them.

    For every photo: encode (sRGB pixels, no metadata at all), write atomically through the
    run record (:mod:`~protector.protect.provenance`), never replacing an existing file unless
    `overwrite`; then decode the file from disk and measure what a recipient gets: max
    |written - input| in 8-bit levels, with a classifier its top-1 prediction, and with a
    NIMA model its NIMA mean score. Failures (a full disk included) are recorded per photo
    and the run goes on. After prediction, :meth:`finish` writes each rank's manifest shard and rank
    zero merges them into the manifest (outside the output folder).

    Args:
        plan: the run's plan (output folder, names, formats).
        provenance: the output folder's run record; every file is written through it.
        manifest: where the manifest goes (its shards go beside it).
        quality: JPEG/WebP quality 1..100.
        overwrite: replace existing outputs.
        categories: class names for the manifest, index order (optional).
    """

    def __init__(
        self,
        plan: Plan,
        provenance: Provenance,
        manifest: Path,
        quality: int = 90,
        overwrite: bool = False,
        categories: list[str] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.plan = plan
        self.provenance = provenance
        self.manifest_path = Path(manifest)
        self.quality = quality
        self.overwrite = overwrite
        self.categories = categories
        self.rank = 0  # this process's global rank, set in setup()
        self.rows: list[ManifestRow] = []
        self.manifest: list[ManifestRow] | None = None  # merged, on rank zero

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.rank = trainer.global_rank

    def _name(self, index: int | None) -> str:
        if index is None or self.categories is None or not 0 <= index < len(self.categories):
            return ""
        return self.categories[index]

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for index, message in batch["failed"]:
            item = self.plan.items[index]
            self.rows.append(ManifestRow(index=index, input=item.input, output=item.output or "",
                                         label=item.label, error=message))
        measured: list[tuple[ManifestRow, np.ndarray]] = []
        x_adv = prediction["x_adv"]
        clean_logits = prediction["clean_logits"]
        nima_original = prediction["nima_original"]
        for k, index in enumerate(batch["index"].tolist()):
            item = self.plan.items[index]
            row = ManifestRow(index=index, input=item.input, output=item.output, label=item.label)
            if clean_logits is not None:
                row.clean_top1 = int(clean_logits[k].argmax())
                row.clean_top1_name = self._name(row.clean_top1)
                height, width = pl_module.working_size(*batch["image"].shape[-2:])
                row.classified_at = f"{width}x{height}"
            if prediction.get("refine_skipped") and batch["write"][k]:
                row.note = (f"refine steps skipped: larger than --tile-max-pixels ({pl_module.tile_max_pixels}) "
                            "under --views as-is")
            if prediction.get("full_size_skipped") and batch["write"][k]:
                row.note = (f"not protected for the file classified as it is: larger than --tile-max-pixels "
                            f"({pl_module.tile_max_pixels}); its resized views are")
            if nima_original is not None:
                row.nima_original = round(float(nima_original[k]), 4)
            clean = to_uint8(batch["image"][k])  # (H, W, 3): exactly the decoded input
            reference = to_uint8(prediction["reference"][k])  # what the budget is measured from
            written = self._write_one(item, row, x_adv[k] if batch["write"][k] else None,
                                      clean, reference)
            if written is not None:
                measured.append((row, written))
            self.rows.append(row)
        if not measured:
            return
        reread = torch.stack([to_tensor(pixels) for _, pixels in measured]).to(pl_module.device)
        if getattr(pl_module, "classifier", None) is not None:
            logits = pl_module.classify(reread)  # (B, num_classes)
            for (row, _), top1 in zip(measured, logits.argmax(dim=1).tolist()):
                row.protected_top1 = top1
                row.protected_top1_name = self._name(top1)
        if getattr(pl_module, "nima", None) is not None:
            for (row, _), score in zip(measured, pl_module.appeal(reread).tolist()):
                row.nima_protected = round(score, 4)

    def _write_one(
        self,
        item: PlannedPhoto,
        row: ManifestRow,
        x_adv: torch.Tensor | None,
        clean: np.ndarray,
        reference: np.ndarray,
    ) -> np.ndarray | None:
        """Write (or keep) one output and re-read it; returns its pixels, None on failure."""
        target = self.plan.output_dir / item.output
        if x_adv is None:
            row.status = "skipped"
        else:
            row.nan_count = int(torch.isnan(x_adv).sum())
            if row.nan_count:
                row.error = f"{item.input}: the protector produced {row.nan_count} NaN values; nothing written"
                return None
            try:
                data = encode_photo(to_uint8(x_adv), item.fmt, self.quality)
                self.provenance.write(item.output, data, "photo", overwrite=self.overwrite, rank=self.rank)
                row.status = "ok"
            except FileExistsError:
                # Appeared since planning (another run): kept, and skipped only if this maker wrote it.
                if not self.provenance.made(item.output):
                    row.error = (f"{item.input}: {target} appeared during the run and was not made by this protector "
                                 "with these settings; rerun with --overwrite to replace it")
                    return None
                row.status = "skipped"
            except OSError as err:  # a full disk, a read-only folder: this photo fails, the run goes on
                row.error = f"{item.input}: cannot write {target} ({os_reason(err)})"
                return None
            except ValueError as err:
                row.error = f"{item.input}: cannot write {target}: {err}"
                return None
        try:
            pixels = read_photo(target, name=str(target)).pixels
        except (ImageReadError, OSError) as err:
            hint = "; rerun with --overwrite to replace it" if row.status == "skipped" else ""
            row.status, row.error = "failed", f"{item.input}: output cannot be read back ({err}){hint}"
            return None
        if pixels.shape != clean.shape:
            row.status = "failed"
            row.error = (
                f"{item.input}: output {target} is {pixels.shape[1]}x{pixels.shape[0]} but the input is "
                f"{clean.shape[1]}x{clean.shape[0]}; rerun with --overwrite to replace it"
            )
            return None
        row.height, row.width = pixels.shape[:2]
        row.max_delta_8bit = int(np.abs(pixels.astype(np.int16) - reference.astype(np.int16)).max())
        row.sha256 = sha256_file(target)
        return pixels

    def finish(self, trainer: pl.Trainer) -> list[ManifestRow] | None:
        """Write this rank's shard; on rank zero merge every shard into ``manifest.csv``.

        Called after ``trainer.predict`` returns, on every rank: a rank that got no batch
        runs no prediction hooks at all, but still has to take part here.
        """
        # The photos written so far are whole and journaled even when the manifest cannot be written.
        resume = "; the photos written so far are whole and recorded: run the same command again to resume"
        with write_failures(f"the manifest {self.manifest_path}", resume):
            write_manifest(shard_path(self.manifest_path, trainer.global_rank), self.rows)
        trainer.strategy.barrier("protect_manifest")
        if trainer.is_global_zero:
            planning_failures = [
                ManifestRow(index=item.index, input=item.input, output=item.output or "", label=item.label,
                            error=item.error or "")
                for item in self.plan.failed()
            ]
            self.manifest = merge_shards(self.manifest_path, trainer.world_size, planning_failures)
            with write_failures(f"the manifest {self.manifest_path}", resume):
                self.provenance.write(MANIFEST_ENTRY, manifest_bytes(self.manifest), "manifest", overwrite=True)
        trainer.strategy.barrier("protect_manifest_merged")
        return self.manifest
