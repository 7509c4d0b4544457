"""The prediction DataLoader: same-size batches, this rank's share, decoding in workers."""

from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from protector.images import MAX_PIXELS
from protector.protect.batching import SizeBatchSampler
from protector.protect.dataset import PhotoDataset, collate_photos
from protector.protect.plan import Plan


class ProtectionDataModule(pl.LightningDataModule):
    """Serves the runnable photos of a plan to ``trainer.predict``.

    The loader is built inside ``predict_dataloader`` so it knows the rank and world size
    of the running Trainer: each rank gets disjoint batches (see :class:`SizeBatchSampler`).

    Args:
        plan: the run's plan.
        batch_size: most photos per batch. Default: 16.
        max_batch_pixels: most pixels per batch. Default: 16,777,216 (16 MP).
        num_workers: DataLoader worker processes decoding photos. Default: 0.
        min_side: smallest accepted photo side in pixels. Default: 32.
        max_pixels: decompression-bomb limit. Default: Pillow's (about 89 MP).
        overwrite: outputs already there are written again.
    """

    def __init__(
        self,
        plan: Plan,
        batch_size: int = 16,
        max_batch_pixels: int = 16 * 1024 * 1024,
        num_workers: int = 0,
        min_side: int = 32,
        max_pixels: int = MAX_PIXELS,
        overwrite: bool = False,
    ) -> None:
        super().__init__()
        self.plan = plan
        self.batch_size = batch_size
        self.max_batch_pixels = max_batch_pixels
        self.num_workers = num_workers
        self.min_side = min_side
        self.max_pixels = max_pixels
        self.overwrite = overwrite

    def predict_dataloader(self) -> DataLoader:
        items = self.plan.runnable()
        dataset = PhotoDataset(self.plan.sources, items, self.min_side, self.max_pixels, self.overwrite)
        rank, world_size = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        sampler = SizeBatchSampler([item.size for item in items], self.batch_size, self.max_batch_pixels,
                                   rank=rank, world_size=world_size)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=collate_photos)
