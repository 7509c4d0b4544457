"""`protector protect`: protect photos with a trained protector.pt and write the files."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from protector.commands.argtypes import (budget, int_at_least, lightning_devices, non_negative_int, positive_int,
                                         quality, unit_interval)
from protector.commands.flags import add_attack_model_arguments, attack_model_spec, deprecated_alias
from protector.images import MAX_PIXELS
from protector.settings import OUTPUT_FORMATS, REFINE_LOSSES, VIEW_SET_NAMES, WORKING_SIDE

if TYPE_CHECKING:
    from protector.protect import ProtectOptions

DESCRIPTION = """\
Protect photos against automatic scene recognition and write them as sRGB with no metadata
(no EXIF, XMP, IPTC, comments or ICC profile: a profile's colours are applied while reading).

  protector protect holiday/          -> holiday-protected/ (and holiday-protected.manifest.csv)

With no --protector the protection is 10 gradient steps against ResNet50-places365 (fetched
once into a user cache) over the views a classifier meets after sharing: the file resized to
the common classifier inputs (224..512 px on the shorter side, a 224 centre crop) and the
file as it is, two views a step in turn (--views classifiers). Photos larger than
--working-side are protected on a scaled copy and the perturbation carried back to full size
(the file as it is is then not among the views).
--protector RUN/protector.pt uses a trained generator instead (one forward pass).
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
    """The flags of `protector protect` (also used by infer.py), in five groups."""
    io = parser.add_argument_group("input and output")
    io.add_argument("photos", type=Path, nargs="*", metavar="PHOTOS",
                    help="image folders and/or image files to protect (the same as --input)")
    io.add_argument("--input", dest="inputs", type=Path, nargs="+", action="extend", default=[],
                    metavar="PATH", help="image folders and/or image files to protect")
    io.add_argument("--recursive", action="store_true", help="also protect images in subfolders of --input folders")
    io.add_argument("--list", dest="list_path", type=Path, metavar="FILE",
                    help="list of image names to protect (e.g. MEPP19test.csv); needs --images")
    io.add_argument("--images", type=Path, metavar="DIR_OR_TAR", help="folder or val_256.tar holding the listed images")
    io.add_argument("--output", type=Path, metavar="DIR",
                    help="folder for the protected files. Default: beside the first input, FOLDER-protected/ "
                         "for a folder, protected/ for a file")
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
    io.add_argument("--min-side", type=positive_int, default=32, help="smaller photos fail (too small to classify). Default: 32")
    io.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS,
                    help=f"decompression-bomb limit in pixels. Default: {MAX_PIXELS}")

    how = parser.add_argument_group("protection")
    protector = how.add_argument(
        "--protector", type=Path, metavar="FILE",
        help="a trained protector file, RUN/protector.pt. Default: none; the gradient steps alone")
    deprecated_alias(how, "--checkpoint", protector)
    how.add_argument("--eps", type=budget, metavar="BUDGET",
                     help="most any pixel may change, of the 0..1 range (2/255: two 8-bit levels), for the "
                          "default protector (a protector file carries its own). Default: 2/255")
    how.add_argument("--allow-large-eps", action="store_true",
                     help="accept a protector whose budget is above 16/255, twice the largest budget measured "
                          "(8/255); the summary names it. Without it such a protector is refused")
    how.add_argument("--views", choices=VIEW_SET_NAMES, default="classifiers",
                     help="what the protection is computed for: classifiers (the common classifier inputs, "
                          "224..512 px and a 224 crop, and the file as it is, taken in turn), shared (the file as it is, "
                          "resized to random sizes in 224..512 px, cropped, re-encoded by a platform) or as-is (the file exactly as "
                          "written: the MediaEval protocol). Default: classifiers")
    how.add_argument("--views-per-step", type=positive_int, default=2, metavar="N",
                     help="views per gradient step under --views classifiers or shared. Default: 2")
    how.add_argument("--working-side", type=int_at_least(32), default=WORKING_SIDE, metavar="PIXELS",
                     help="under --views classifiers or shared, photos whose shorter side is larger are protected "
                          "on a copy of this shorter side and the perturbation is carried to full size. Default: %(default)s")
    how.add_argument("--full-size-steps", type=non_negative_int, default=0, metavar="N",
                     help="under --views classifiers or shared, after the views' steps, N gradient steps of eps/4 "
                          "for the file classified as it is, at full size (one full-size pass each; photos up to "
                          "--tile-max-pixels, the manifest notes the others): with a 512 px working copy one step took "
                          "the full-size file from 5%% to 85%% fooled and the resized views down by 15-20 points "
                          "(BENCHMARKS.md). "
                          "Default: 0")
    how.add_argument("--refine-steps", type=non_negative_int, metavar="N",
                     help="after the generator, N white-box gradient steps against --classifier over --views (under "
                          "--views as-is through a differentiable JPEG at --quality), within the same budget: stronger "
                          "protection, "
                          "N extra classifier passes per view. Under --views as-is, photos above --tile-max-pixels "
                          "are not refined (the manifest says so). Default: 10 without --protector, else 0")
    how.add_argument("--extra-steps", type=non_negative_int, metavar="N",
                     help="after the refine steps, up to N more for the photos the attack model still recognizes "
                          "under one of their views (checked on the 8-bit photo through the file's JPEG every two "
                          "steps): under --views classifiers they took the file as it is from 90%% to 95%% fooled on held-out "
                          "photos (224 px from 85%% to 100%% on tune photos), for about a third more time on average "
                          "(BENCHMARKS.md). "
                          "Default: 10 under --views classifiers, else 0")
    how.add_argument("--refine-loss", choices=REFINE_LOSSES, default=None,
                     help="what the refine steps descend: topk (the clean prediction out of the top 5 by a margin "
                          "of 2 logits), sensitive_safe (also every --senscats category: the photo reads as an "
                          "ordinary non-sensitive scene, all sensitive classes below the 5th other class), margin "
                          "(out of the top 1), ce, relativistic. Default: ce over views (a margin won under one "
                          "view is lost under the next), topk under --views as-is")
    how.add_argument("--senscats", type=Path, metavar="FILE",
                     help="MEPP18senscats.txt: the sensitive categories --refine-loss sensitive_safe keeps out")

    model = add_attack_model_arguments(parser)
    model.add_argument("--categories", type=Path, metavar="FILE",
                       help="categories_places365.txt: class names for the manifest and summary")

    edit = parser.add_argument_group("appeal (protectors trained with an enhancer)")
    edit.add_argument("--enhance", choices=("auto", "off"), default="auto",
                      help="auto: apply the tone edit the protector was trained with (none if it has none); "
                           "off: protect the photo as it is. Default: auto")
    edit.add_argument("--enhance-strength", type=unit_interval, default=1.0, metavar="S",
                      help="blend of the trained edit with the unedited photo, 0..1. Default: 1")
    edit.add_argument("--appeal-steps", type=non_negative_int, default=None, metavar="K",
                      help="refine the trained edit per photo: K Adam steps on its tone curve and saturation, "
                           "maximizing NIMA of the edit as saved, before protecting around it (needs --nima; "
                           "about 0.06 s a step on 2 CPU cores, any photo size). Default: 0 (20 steps measured +0.02 "
                           "NIMA for 1.3 s a photo: BENCHMARKS.md, appeal round 4)")
    edit.add_argument("--nima", type=Path, metavar="WEIGHTS",
                      help="NIMA weights (weights_mobilenet_aesthetic_0.07.hdf5): the manifest records each photo's "
                           "NIMA score before and after (on the written file), the summary their means")
    edit.add_argument("--nima-preprocess", choices=("idealo", "native"), default="idealo",
                      help="idealo: resize to 224 (nearest); native: full size (as the organizers). Default: idealo")

    run = parser.add_argument_group("runtime (devices, batching, tiles of very large photos)")
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
    run.add_argument("--tile-max-pixels", type=positive_int, default=4 * 1024 * 1024,
                     help="photos above this many pixels are protected in blended tiles. Default: 4194304")
    run.add_argument("--tile", type=positive_int, default=1024, help="tile side in pixels. Default: 1024")
    run.add_argument("--tile-overlap", type=non_negative_int, default=128, help="tile overlap in pixels. Default: 128")
    run.add_argument("--tile-align", type=positive_int, default=64, help="tile origins are multiples of this. Default: 64")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "protect", help="protect photos against scene recognition", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> ProtectOptions:
    """The run's options from the parsed flags (the attack-model flags as one spec).

    Raises:
        ValueError: --classifier-checkpoint without --classifier.
    """
    from protector.protect import ProtectOptions

    fields = ProtectOptions.__dataclass_fields__
    options = ProtectOptions(**{key: value for key, value in vars(args).items() if key in fields},
                             attack_model=attack_model_spec(args))
    options.inputs = list(getattr(args, "photos", [])) + options.inputs
    return options


def run(args: argparse.Namespace) -> int:
    from protector.protect import protect

    terminated: list[int] = []
    try:
        options = options_from_args(args)
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
