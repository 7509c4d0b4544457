"""`protector accuracy`: clean top-1/top-5 of a classifier on a labelled image list.

The command line only: what is measured and how is :mod:`protector.evaluation.accuracy`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from protector.commands.argtypes import positive_int
from protector.commands.flags import add_attack_model_arguments, attack_model_spec
from protector.evaluation.accuracy import format_summary, labelled_entries, measure_accuracy

DESCRIPTION = """\
Measure clean top-1/top-5 accuracy of a Places365 classifier on a labelled image list.

  protector accuracy --classifier resnet50 --classifier-checkpoint weights/resnet50_places365.pth.tar \\
      --sha256 HEX --list MEPP18val.csv --images val_256.tar
  protector accuracy --classifier standin --list ../shared/standin/images.tsv \\
      --images ../shared/standin/images

Entries without a label (none in the list, none in --labels) are skipped and counted.
Exit status: 0 ok, 1 some images could not be read (still scored without them), 2 error.
"""


# Spellings before the attack-model flags were shared with protect and evaluate.
OLD_SPELLINGS = [("--model", "--classifier"), ("--checkpoint", "--classifier-checkpoint"),
                 ("--search-path", "--classifier-path")]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "accuracy",
        help="clean top-1/top-5 of a classifier on a labelled image list",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_attack_model_arguments(parser, OLD_SPELLINGS, "the classifier measured (--classifier is required)")
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
    from protector.data.lists import read_image_list, read_places365_val
    from protector.data.sources import open_source
    from protector.devices import resolve_device
    from protector.images import write_atomic
    from protector.outputs import prepare_file, write_failures

    spec = attack_model_spec(args)
    if spec.is_default:
        raise ValueError("--classifier is required: the model to measure (e.g. --classifier resnet50 "
                         "--classifier-checkpoint weights/resnet50_places365.pth.tar, or --classifier standin)")
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
    model = spec.build().to(device).eval()

    result = measure_accuracy(model, source, items, args.batch_size, device, progress=args.progress)
    result.skipped_unknown_label = skipped
    label = spec.label()
    print(format_summary(result, f"protector accuracy: {label} on {args.list_path.name} ({source.describe()})", device))
    warning = _checkpoint_warning(result, label, [args.list_path, args.labels, args.images])
    if warning:
        print(f"warning: {warning}", file=sys.stderr)

    if args.json is not None:
        report = {
            "model": label,
            "checkpoint": str(spec.checkpoint) if spec.checkpoint else None,
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
            "warning": warning,
            "unreadable": [{"name": name, "reason": reason} for name, reason in result.unreadable],
            "seconds": round(result.seconds, 3),
            "per_image": [asdict(image) for image in result.images],
        }
        with write_failures(str(args.json)):
            write_atomic(args.json, (json.dumps(report, indent=1) + "\n").encode("utf-8"), overwrite=True)
        print(f"  json     {args.json}")
    return 1 if result.unreadable else 0


def _checkpoint_warning(result, model: str, places: list) -> str | None:
    """The wrong-checkpoint warning when the scored photos are (a subset of) MEPP19test or MEPP18val."""
    from protector.evaluation.checkpoint_check import check_clean_accuracy, task_list_names

    check = check_clean_accuracy([(im.name, bool(im.top5) and im.top5[0] == im.label) for im in result.images],
                                 task_list_names(places))
    return check.warning(model) if check is not None and check.far else None
