"""Protection's progress bar: counts photos, not batches (a batch of 64 took minutes on a CPU)."""

from __future__ import annotations

import sys
from typing import Any, Iterable

import pytorch_lightning as pl
from pytorch_lightning import Callback
from tqdm.auto import tqdm


def photos_in(batch_sampler: Iterable[list[int]] | None) -> int | None:
    """How many photos a batch sampler yields (None when that cannot be known without consuming it).

    Lightning wraps the batch sampler of a predict loader in an iterator that keeps one
    position (``_batch_sampler`` holds the original): counting must not iterate the wrapper.
    """
    sampler = getattr(batch_sampler, "_batch_sampler", batch_sampler)
    if sampler is None:
        return None
    try:
        batches = iter(sampler)
        if batches is sampler:  # an iterator, not a re-iterable sampler: counting would consume it
            return None
        return sum(len(batch) for batch in batches)
    except TypeError:
        return None


class PhotoProgress(Callback):
    """A tqdm bar over the photos this rank protects, advanced by each batch's photo count.

    Failed photos count too (they are done). On a terminal the bar refreshes every second; in
    a log file (stderr not a terminal) it writes a line every ``log_interval_s`` seconds, so a
    log shows progress without a line per update. Only global rank zero shows a bar.

    Args:
        log_interval_s: seconds between lines when stderr is not a terminal. Default: 30.
    """

    def __init__(self, log_interval_s: float = 30.0) -> None:
        super().__init__()
        self.log_interval_s = log_interval_s
        self.bar: tqdm | None = None
        self.done = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.done = 0
        if not trainer.is_global_zero:
            return
        loaders = trainer.predict_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        total = photos_in(getattr(loader, "batch_sampler", None))
        shard = f" (rank 0 of {trainer.world_size})" if trainer.world_size > 1 else ""
        terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, desc=f"protecting{shard}", unit="photo", dynamic_ncols=terminal,
                        mininterval=1.0 if terminal else self.log_interval_s, file=sys.stderr)

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                             batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        photos = len(batch["index"]) + len(batch["failed"])
        self.done += photos
        if self.bar is not None:
            self.bar.update(photos)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
