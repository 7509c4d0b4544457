"""Clean top-1/top-5 of a classifier on labelled photos, as `protector accuracy` reports it.

Photos are decoded from disk (a folder or val_256.tar read in place) and classified at full
size, normalization only, exactly as the task's attack model is evaluated. Photos of equal
size share a batch; nothing is resized.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from protector.batching import same_size_batches


@dataclass
class ImageResult:
    """One scored photo: its label and the classifier's five best classes."""

    name: str
    label: int
    top5: list[int]


@dataclass
class AccuracyResult:
    """Counts and per-image predictions of one accuracy run."""

    n_images: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    skipped_unknown_label: int = 0
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    images: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def top1(self) -> float:
        return self.top1_correct / self.n_images if self.n_images else float("nan")

    @property
    def top5(self) -> float:
        return self.top5_correct / self.n_images if self.n_images else float("nan")


def labelled_entries(
    entries: Iterable, labels: dict[str, int] | None = None, limit: int | None = None
) -> tuple[list[tuple[str, int]], int]:
    """(name, label) pairs to score, taking missing labels from `labels`, and the count skipped.

    `limit` keeps the first N labelled entries (in list order).
    """
    chosen: list[tuple[str, int]] = []
    skipped = 0
    for entry in entries:
        label = entry.label if entry.label is not None else (labels or {}).get(entry.name)
        if label is None:
            skipped += 1
            continue
        if limit is None or len(chosen) < limit:
            chosen.append((entry.name, label))
    return chosen, skipped


def _decoded(source, items: list[tuple[str, int]], result: AccuracyResult) -> Iterator[tuple[str, int, torch.Tensor]]:
    from protector.data.sources import SourceError
    from protector.images import ImageReadError, read_photo, to_tensor

    for name, label in items:
        try:
            pixels = read_photo(source.read_bytes(name), name=name).pixels
        except (ImageReadError, SourceError, OSError) as err:  # OSError: missing, EIO, a FIFO
            plain = isinstance(err, OSError) and err.strerror and not isinstance(err, FileNotFoundError)
            result.unreadable.append((name, f"{name}: cannot be read ({err.strerror})" if plain else str(err)))
            continue
        yield name, label, to_tensor(pixels)  # (3, H, W) at the photo's own size


@torch.inference_mode()
def measure_accuracy(
    model: nn.Module,
    source,
    items: list[tuple[str, int]],
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> AccuracyResult:
    """Top-1/top-5 of `model` (RGB [0, 1] in, logits out) on `items` read from `source`.

    Photos are grouped by size (:func:`protector.batching.same_size_batches`): a batch is
    classified when it holds `batch_size` photos, and the partial batches at the end.
    Unreadable photos are counted, not scored.

    Args:
        model: the classifier, already in eval mode.
        source: an `ImageSource` (`read_bytes(name)`).
        items: (name, label) pairs; labels are 0-based class indices.
        batch_size: photos per model call.
        device: where the model runs.
        progress: show a progress bar on stderr (terminals only).
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    device = torch.device(device)
    result = AccuracyResult()
    start = time.perf_counter()
    bar = tqdm(total=len(items), unit="img", disable=None if progress else True, file=sys.stderr)
    # No bar when stderr is a file or pipe (a log, CI): a plain line every ~5% instead of silence.
    line_every = max(1, len(items) // 20) if progress and bar.disable else 0
    lines_done = [0]

    def classify(batch: list[tuple[str, int, torch.Tensor]]) -> None:
        x = torch.stack([image for _, _, image in batch]).to(device)  # (B, 3, H, W)
        logits = model(x).float()  # (B, num_classes)
        labels = torch.tensor([label for _, label, _ in batch], device=logits.device)
        if int(labels.max()) >= logits.shape[1]:
            raise ValueError(f"label {int(labels.max())} is out of range for a model with {logits.shape[1]} classes")
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (B, 5)
        hits = top5 == labels[:, None]
        result.top1_correct += int(hits[:, 0].sum())
        result.top5_correct += int(hits.any(dim=1).sum())
        result.n_images += len(batch)
        for (name, label, _), row in zip(batch, top5.cpu().tolist()):
            result.images.append(ImageResult(name, label, row))
        bar.update(len(batch))
        if line_every and result.n_images // line_every > lines_done[0]:
            lines_done[0] = result.n_images // line_every
            rate = result.n_images / max(time.perf_counter() - start, 1e-9)
            print(f"accuracy: {result.n_images}/{len(items)} photos scored ({rate:.1f} photos/s)", file=sys.stderr,
                  flush=True)

    try:
        # Each batch as soon as it is full: only the open batches are held, not every decoded photo.
        for batch in same_size_batches(_decoded(source, items, result), lambda item: tuple(item[2].shape[-2:]),
                                       batch_size):
            classify(batch)
    finally:
        bar.close()
    result.seconds = time.perf_counter() - start
    return result


def format_summary(result: AccuracyResult, title: str, device: torch.device | str) -> str:
    """A few aligned lines for the terminal."""
    rate = result.n_images / result.seconds if result.seconds > 0 else float("nan")
    lines = [
        title,
        f"  images   {result.n_images} scored, {result.skipped_unknown_label} skipped (unknown label), "
        f"{len(result.unreadable)} unreadable",
        f"  top-1    {100 * result.top1:.2f}%  ({result.top1_correct}/{result.n_images})",
        f"  top-5    {100 * result.top5:.2f}%  ({result.top5_correct}/{result.n_images})",
        f"  time     {result.seconds:.1f} s ({rate:.1f} images/s on {device})",
    ]
    for name, reason in result.unreadable[:10]:
        lines.append(f"  unreadable: {reason}" if name in reason else f"  unreadable: {name}: {reason}")
    if len(result.unreadable) > 10:
        lines.append(f"  ... and {len(result.unreadable) - 10} more unreadable")
    return "\n".join(lines)
