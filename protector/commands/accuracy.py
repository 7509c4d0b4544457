"""`protector accuracy`: clean top-1/top-5 of a classifier on a labelled image list.

Photos are decoded from disk (a folder or val_256.tar read in place) and classified at full
size, normalization only, exactly as the task's attack model is evaluated. Photos of equal
size share a batch; nothing is resized.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from protector.batching import same_size_batches
from protector.commands.argtypes import positive_int

DESCRIPTION = """\
Measure clean top-1/top-5 accuracy of a Places365 classifier on a labelled image list.

  protector accuracy --model resnet50 --classifier-checkpoint weights/resnet50_places365.pth.tar \\
      --sha256 HEX --list MEPP18val.csv --images val_256.tar
  protector accuracy --model standin --list ../shared/standin/images.tsv \\
      --images ../shared/standin/images

Entries without a label (none in the list, none in --labels) are skipped and counted.
Exit status: 0 ok, 1 some images could not be read (still scored without them), 2 error.
"""


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


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "accuracy",
        help="clean top-1/top-5 of a classifier on a labelled image list",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, metavar="MODEL",
        help="resnet50, resnet18, densenet161, wideresnet18 (with --classifier-checkpoint), standin, or module.Class",
    )
    parser.add_argument("--classifier-checkpoint", "--checkpoint", dest="checkpoint", type=Path, metavar="FILE",
                        help="official <arch>_places365.pth.tar")
    parser.add_argument("--sha256", help="expected sha256 of --classifier-checkpoint")
    parser.add_argument("--allow-unpinned", action="store_true", help="accept a checkpoint with no sha256 to check")
    parser.add_argument(
        "--search-path", "--classifier-path", dest="search_path", type=Path, metavar="DIR",
        help="folder put on sys.path for a module.Class model (default for standin: ../shared/standin)",
    )
    parser.add_argument("--list", dest="list_path", type=Path, required=True, metavar="FILE",
                        help="image list: MEPP csv, places365_val.txt, or a table with file/label columns")
    parser.add_argument("--images", type=Path, required=True, metavar="DIR_OR_TAR",
                        help="folder of images or val_256.tar (read in place)")
    parser.add_argument("--labels", type=Path, metavar="FILE",
                        help="places365_val.txt: labels for list entries that have none (e.g. MEPP19test.csv)")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="photos per model call. Default: 32")
    parser.add_argument("--limit", type=positive_int, metavar="N", help="score only the first N labelled images")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write counts and per-image top-5 as JSON")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1. Default: auto")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar (on a terminal) or progress lines (otherwise)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"protector accuracy: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from protector.classifier_spec import build_classifier, classifier_label
    from protector.data.lists import read_image_list, read_places365_val
    from protector.data.sources import open_source
    from protector.devices import resolve_device
    from protector.images import write_atomic
    from protector.outputs import prepare_file, write_failures

    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be >= 1, got {args.limit}")
    labels = read_places365_val(args.labels) if args.labels else None
    items, skipped = labelled_entries(read_image_list(args.list_path), labels, args.limit)
    if not items:
        hint = "" if args.labels else "; pass --labels places365_val.txt for lists without labels"
        raise ValueError(f"{args.list_path}: no labelled images to score ({skipped} without a label){hint}")
    source = open_source(args.images)
    if args.json is not None:
        prepare_file(args.json, "--json")  # a folder, a read-only or full place: refused before the work
    device = resolve_device(args.device)
    model = build_classifier(args.model, args.checkpoint, args.sha256, args.allow_unpinned, args.search_path)
    model = model.to(device).eval()

    result = measure_accuracy(model, source, items, args.batch_size, device, progress=args.progress)
    result.skipped_unknown_label = skipped
    label = classifier_label(args.model, args.checkpoint)
    print(format_summary(result, f"protector accuracy: {label} on {args.list_path.name} ({source.describe()})", device))

    if args.json is not None:
        report = {
            "model": label,
            "checkpoint": str(args.checkpoint) if args.checkpoint else None,
            "list": str(args.list_path),
            "images": str(args.images),
            "labels": str(args.labels) if args.labels else None,
            "device": str(device),
            "n_images": result.n_images,
            "top1": result.top1 if result.n_images else None,
            "top5": result.top5 if result.n_images else None,
            "top1_correct": result.top1_correct,
            "top5_correct": result.top5_correct,
            "skipped_unknown_label": result.skipped_unknown_label,
            "unreadable": [{"name": name, "reason": reason} for name, reason in result.unreadable],
            "seconds": round(result.seconds, 3),
            "per_image": [asdict(image) for image in result.images],
        }
        with write_failures(str(args.json)):
            write_atomic(args.json, (json.dumps(report, indent=1) + "\n").encode("utf-8"), overwrite=True)
        print(f"  json     {args.json}")
    return 1 if result.unreadable else 0
