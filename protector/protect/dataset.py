"""Decode the planned photos in DataLoader workers; a bad file becomes a message, not a crash."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from protector.data.sources import ImageSource, SourceError
from protector.images import MAX_PIXELS, ImageReadError, read_photo, to_tensor
from protector.protect.plan import PlannedPhoto


class PhotoDataset(Dataset):
    """The runnable photos of a plan, decoded to tensors.

    Each item is a dict: ``index`` (the plan index), ``input`` (its name), ``image``
    (3, H, W) float32 sRGB in [0, 1] (a colour profile is applied while decoding) or None,
    ``write`` (whether its output is to be written), ``error`` (None, or a message naming the
    file). Decoding failures (empty, truncated, not an image, decompression bomb, too small)
    are returned, not raised, so one bad file never stops a batch.

    Args:
        sources: the plan's image sources (picklable, one copy per worker).
        items: the plan's runnable photos.
        min_side: smallest accepted width or height in pixels (classifiers need a few).
        max_pixels: decompression-bomb limit in pixels.
        overwrite: photos whose output exists are protected and written again.
    """

    def __init__(
        self,
        sources: list[ImageSource],
        items: list[PlannedPhoto],
        min_side: int = 32,
        max_pixels: int = MAX_PIXELS,
        overwrite: bool = False,
    ) -> None:
        self.sources = sources
        self.items = items
        self.min_side = min_side
        self.max_pixels = max_pixels
        self.overwrite = overwrite

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        sample: dict[str, Any] = {"index": item.index, "input": item.input, "image": None, "error": None,
                                  "write": self.overwrite or not item.exists}
        try:
            data = self.sources[item.source].read_bytes(item.key)
            photo = read_photo(data, name=item.input, max_pixels=self.max_pixels)
        except (ImageReadError, SourceError) as err:
            sample["error"] = str(err)
            return sample
        except OSError as err:  # vanished or unreadable since planning
            sample["error"] = f"{item.input}: cannot be read ({err})"
            return sample
        height, width = photo.pixels.shape[:2]
        if min(height, width) < self.min_side:
            sample["error"] = (
                f"{item.input}: {width}x{height} pixels is smaller than the {self.min_side}-pixel minimum side "
                "(--min-side); too small to protect or classify"
            )
            return sample
        sample["image"] = to_tensor(photo.pixels)
        return sample


def collate_photos(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the decoded images of one batch; failures travel beside them.

    Returns a dict: ``image`` (B, 3, H, W), ``index`` (B,) int64 plan indices,
    ``write`` list of B, ``failed`` list of (plan index, message).
    The batch sampler groups images by header size; an image whose decoded size differs
    from the batch's (a header that lied) fails with a message instead of breaking the stack.
    """
    decoded = [s for s in samples if s["error"] is None]
    failed = [(s["index"], s["error"]) for s in samples if s["error"] is not None]
    if decoded:
        shape = decoded[0]["image"].shape
        for s in decoded[1:]:
            if s["image"].shape != shape:
                failed.append((s["index"], f"{s['input']}: decoded size {tuple(s['image'].shape[1:])} differs from its header's"))
        decoded = [s for s in decoded if s["image"].shape == shape]
    images = torch.stack([s["image"] for s in decoded]) if decoded else torch.zeros(0, 3, 1, 1)
    return {
        "image": images,
        "index": torch.tensor([s["index"] for s in decoded], dtype=torch.int64),
        "write": [s["write"] for s in decoded],
        "failed": failed,
    }
