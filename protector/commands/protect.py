"""`protector protect`: protect photos with a trained protector.pt and write the files."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from protector.commands.argtypes import (lightning_devices, non_negative_int, positive_int, quality,
                                         unit_interval)
from protector.images import MAX_PIXELS, OUTPUT_FORMATS

# protector.losses.attack_loss_by_name's short names (the losses module imports torch: kept lazy)
REFINE_LOSSES = ("topk", "sensitive_safe", "margin", "ce", "relativistic")

DESCRIPTION = """\
Protect photos in one forward pass each and write them as sRGB with no metadata (no EXIF,
XMP, IPTC, comments or ICC profile: a profile's colours are applied while reading).
Inputs: folders and files (--input), or a list file read from a folder or val_256.tar
(--list with --images). Each photo keeps its size; outputs keep the input's relative name
with the new extension, or get the run-code prefix of the task's submission format.
Inputs whose output names would collide (a.jpg and a.png -> a.jpg) fail before the run:
rename one, or use --format same. protect-run.json in the output folder records the
protector file's sha256, the settings and each written file's sha256: a rerun with the same
protector and settings resumes (keeps what it wrote); any other file at an output name, or
a manifest / zip not written by it, stops the run unless --overwrite. The manifest records
every input with its original path, label and predictions: it is private, so it goes
beside the output folder (OUTPUT.manifest.csv, or --manifest), never into it or the zip.
The exit code is 1 if any input failed (see --allow-failures), 2 for unusable settings,
such files, or a place that cannot be written.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `protector protect` (also used by infer.py)."""
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--checkpoint", type=Path, required=True, help="the trained protector file, RUN/protector.pt")
    io.add_argument("--input", dest="inputs", type=Path, nargs="+", action="extend", default=[],
                    metavar="PATH", help="image folders and/or image files to protect")
    io.add_argument("--recursive", action="store_true", help="also protect images in subfolders of --input folders")
    io.add_argument("--list", dest="list_path", type=Path, metavar="FILE",
                    help="list of image names to protect (e.g. MEPP19test.csv); needs --images")
    io.add_argument("--images", type=Path, metavar="DIR_OR_TAR", help="folder or val_256.tar holding the listed images")
    io.add_argument("--output", type=Path, required=True, metavar="DIR", help="folder for the protected files")
    io.add_argument("--manifest", type=Path, metavar="FILE",
                    help="where the manifest goes; outside --output (it names the originals and their labels). "
                         "Default: OUTPUT.manifest.csv beside the output folder")
    io.add_argument("--format", dest="fmt", choices=OUTPUT_FORMATS, default="jpeg",
                    help="output format; 'same' keeps each input's format (GIF becomes PNG). Default: jpeg")
    io.add_argument("--quality", type=quality, default=90, help="JPEG/WebP quality 1..100. Default: 90")
    io.add_argument("--run-code", metavar="CODE",
                    help="prefix every output name with CODE_ (task submission naming, e.g. rteam_base)")
    io.add_argument("--zip", action="store_true", help="also write OUTPUT/CODE.zip of the outputs (needs --run-code)")
    io.add_argument("--overwrite", action="store_true", help="replace existing outputs, the manifest and the zip; without it a rerun skips only "
                         "the files this protector with these settings wrote and refuses any other")
    io.add_argument("--allow-failures", action="store_true",
                    help="exit 0 and still write the zip when some inputs failed")

    cls = parser.add_argument_group("classifier for the manifest (optional)")
    cls.add_argument("--classifier", metavar="SPEC",
                     help="resnet50 (needs --classifier-checkpoint), standin, or module.Class; "
                          "adds clean and protected top-1 (re-read from the written file) to the manifest")
    cls.add_argument("--classifier-checkpoint", type=Path, metavar="FILE", help="e.g. weights/resnet50_places365.pth.tar")
    cls.add_argument("--sha256", dest="classifier_sha256", help="expected sha256 of --classifier-checkpoint")
    cls.add_argument("--allow-unpinned", action="store_true", help="accept a classifier checkpoint with no sha256 to check")
    cls.add_argument("--classifier-path", type=Path, metavar="DIR", help="folder put on sys.path for a module.Class spec")
    cls.add_argument("--categories", type=Path, metavar="FILE", help="categories_places365.txt, for class names")
    cls.add_argument("--refine-steps", type=non_negative_int, default=0, metavar="N",
                     help="after the generator, N white-box gradient steps against --classifier through a "
                          "differentiable JPEG at --quality, within the same budget: stronger protection, "
                          "N extra classifier passes. Photos above --tile-max-pixels are not refined. Default: 0")
    cls.add_argument("--refine-loss", choices=REFINE_LOSSES, default="topk",
                     help="what the refine steps descend: topk (the clean prediction out of the top 5 by a margin "
                          "of 2 logits), sensitive_safe (also every --senscats category: the photo reads as an "
                          "ordinary non-sensitive scene, all sensitive classes below the 5th other class), margin "
                          "(out of the top 1), ce, relativistic. Default: topk")
    cls.add_argument("--senscats", type=Path, metavar="FILE",
                     help="MEPP18senscats.txt: the sensitive categories --refine-loss sensitive_safe keeps out")

    edit = parser.add_argument_group("appeal (protectors trained with an enhancer)")
    edit.add_argument("--enhance", choices=("auto", "off"), default="auto",
                      help="auto: apply the tone edit the protector was trained with (none if it has none); "
                           "off: protect the photo as it is. Default: auto")
    edit.add_argument("--enhance-strength", type=unit_interval, default=1.0, metavar="S",
                      help="blend of the trained edit with the unedited photo, 0..1. Default: 1")
    edit.add_argument("--appeal-steps", type=non_negative_int, default=None, metavar="K",
                      help="refine the trained edit per photo: K Adam steps on its tone curve and saturation, "
                           "maximizing NIMA of the edit as saved, before protecting around it (needs --nima; "
                           "about 0.1 s a step on 2 CPU cores, any photo size). Default: 20 with --nima and a "
                           "protector with an edit, else 0")
    edit.add_argument("--nima", type=Path, metavar="WEIGHTS",
                      help="NIMA weights (weights_mobilenet_aesthetic_0.07.hdf5): the manifest records each photo's "
                           "NIMA score before and after (on the written file), the summary their means")
    edit.add_argument("--nima-preprocess", choices=("idealo", "native"), default="idealo",
                      help="idealo: resize to 224 (nearest); native: full size (as the organizers). Default: idealo")

    run = parser.add_argument_group("devices and batching")
    run.add_argument("--batch-size", type=positive_int, default=16, help="most photos per batch (same-size photos). Default: 16")
    run.add_argument("--max-batch-pixels", type=positive_int, default=16 * 1024 * 1024,
                     help="most pixels per batch; larger photos go one at a time. Default: 16777216")
    run.add_argument("--num-workers", type=non_negative_int, default=None,
                     help="DataLoader workers decoding photos. Default: a quarter of the CPU cores, at most 4")
    run.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto, cpu, gpu. Default: auto")
    run.add_argument("--devices", type=lightning_devices, default="auto", help="Lightning devices: auto, 1, 8, '0,1'. Default: auto")
    run.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp. Default: auto")
    run.add_argument("--num-nodes", type=positive_int, default=1, help="nodes for multi-node runs. Default: 1")
    run.add_argument("--precision", help="Lightning precision. Default: bf16-mixed on GPU, 32-true on CPU")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    big = parser.add_argument_group("very large photos")
    big.add_argument("--tile-max-pixels", type=positive_int, default=4 * 1024 * 1024,
                     help="photos above this many pixels are protected in blended tiles. Default: 4194304")
    big.add_argument("--tile", type=positive_int, default=1024, help="tile side in pixels. Default: 1024")
    big.add_argument("--tile-overlap", type=non_negative_int, default=128, help="tile overlap in pixels. Default: 128")
    big.add_argument("--tile-align", type=positive_int, default=64, help="tile origins are multiples of this. Default: 64")
    big.add_argument("--min-side", type=positive_int, default=32, help="smaller photos fail (too small to classify). Default: 32")
    big.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS,
                     help=f"decompression-bomb limit in pixels. Default: {MAX_PIXELS}")
    big.add_argument("--allow-large-eps", action="store_true",
                     help="accept a protector whose budget is above 16/255, twice the largest budget measured "
                          "(8/255); the summary names it. Without it such a protector is refused")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "protect", help="protect photos with a trained protector.pt", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from protector.protect import ProtectOptions, protect

    fields = ProtectOptions.__dataclass_fields__
    options = ProtectOptions(**{key: value for key, value in vars(args).items() if key in fields})
    try:
        with sigterm_as_interrupt() as terminated:
            summary = protect(options)
    except (ValueError, FileNotFoundError) as err:
        print(f"protector protect: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit):
        # Lightning turns the interrupt into SystemExit(1) after its own clean-up.
        if not terminated:
            raise
        print("protector protect: stopped by SIGTERM; every file written so far is whole and recorded. Run the "
              "same command again to resume.", file=sys.stderr)
        return 128 + signal.SIGTERM
    if summary is None:  # a non-zero rank of a distributed run; rank zero reports
        return 0
    print(summary.format())
    return 0 if summary.failed == 0 or options.allow_failures else 1


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Within the block SIGTERM stops the run like Ctrl-C (Lightning's predict loop ignores it).

    Yields a list that is non-empty once SIGTERM arrived.
    """
    received: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield received  # only the main thread may set handlers; an embedding program owns signals
        return
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)
