"""Protection under the views a classifier meets: methods x views, on the written files.

Each method protects the same photos through `protector protect` (the product's own path:
decode, protect, JPEG q90, atomic write), and every written file is then classified as a
classifier would really see it under each view of ``protector.views.EVALUATION_VIEWS``
(PIL's resize, a real JPEG re-encode), against the original's prediction under the same view
(``protector.evaluation.views.score_views``). The control row is the original re-saved as
JPEG q90: what re-encoding alone changes. PSNR is the written file against the original.

    python bench/views_table.py --photos fullsize-heldout --method "today=--protector runs/standin_plain/protector.pt \\
        --views as-is --refine-steps 2" --method "eot-pgd-10=--refine-steps 10"

Photo sets: ``fullsize-heldout`` (../shared/fullsize 051..100, never tuned on), ``fullsize-tune``
(001..050), ``standin256`` (a list of 256 px stand-in photos, --list).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time
from pathlib import Path

import torch

from protector.classifier_spec import build_classifier
from protector.evaluation.fidelity import fidelity
from protector.evaluation.views import jpeg_round_trip, score_views
from protector.images import read_photo
from protector.protect import protect
from protector.views import EVALUATION_VIEWS

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def photo_set(name: str, limit: int | None, list_path: Path | None, skip: int = 0) -> list[Path]:
    if name.startswith("fullsize"):
        photos = sorted((SHARED / "fullsize").glob("urban100_img_*.jpg"))
        photos = photos[50:] if name == "fullsize-heldout" else photos[:50]
    else:
        names = [line.split()[0] for line in list_path.read_text().splitlines() if line.strip()]
        photos = [SHARED / "standin/images" / n for n in names]
    photos = photos[skip:]
    return photos[:limit] if limit else photos


def run_method(flags: str, photos: list[Path], out: Path) -> tuple[list[Path], float]:
    """Protect `photos` with the protect flags `flags` into `out`; the files and seconds per photo."""
    parser = argparse.ArgumentParser()
    from protector.commands.protect import add_arguments, options_from_args

    add_arguments(parser)
    args = parser.parse_args(["--input", *map(str, photos), "--output", str(out), "--classifier", "standin",
                              "--no-progress", "--overwrite", "--batch-size", "1", *shlex.split(flags)])
    options = options_from_args(args)
    started = time.perf_counter()
    summary = protect(options)
    seconds = (time.perf_counter() - started) / max(summary.written, 1)
    return [out / (p.stem + ".jpg") for p in photos], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="fullsize-heldout", choices=("fullsize-heldout", "fullsize-tune", "standin256"))
    parser.add_argument("--list", type=Path, help="photo names for standin256")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--skip", type=int, default=0, help="leave out the set's first N photos")
    parser.add_argument("--method", action="append", required=True, metavar="NAME=FLAGS")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/views")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    photos = photo_set(args.photos, args.limit, args.list, args.skip)
    originals = [read_photo(p).pixels for p in photos]
    model = build_classifier("standin")
    device = torch.device("cpu")
    rows = []
    control = score_views(model, originals, [jpeg_round_trip(p, 90) for p in originals], EVALUATION_VIEWS, device)
    rows.append({"method": "control (JPEG q90 only)", "views": {s.view: [s.top1_changed, s.top5_changed] for s in control}})
    for spec in args.method:
        name, _, flags = spec.partition("=")
        files, seconds = run_method(flags, photos, args.out / args.photos / name)
        protected = [read_photo(f).pixels for f in files]
        scores = score_views(model, originals, protected, EVALUATION_VIEWS, device)
        psnr = statistics.median(fidelity(o, p).psnr for o, p in zip(originals, protected))
        rows.append({"method": name, "flags": flags, "seconds_per_photo": seconds, "psnr_median": psnr,
                     "views": {s.view: [s.top1_changed, s.top5_changed] for s in scores}})
        print(json.dumps(rows[-1]), flush=True)
    header = ["method"] + [v.name for v in EVALUATION_VIEWS] + ["PSNR dB", "s/photo"]
    print(f"\n{len(photos)} photos ({args.photos}), stand-in classifier, top-1 / top-5 changed (%):\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        cells = [f"{100 * t1:.0f} / {100 * t5:.0f}" for t1, t5 in row["views"].values()]
        tail = [f"{row['psnr_median']:.1f}", f"{row['seconds_per_photo']:.2f}"] if "psnr_median" in row else ["", ""]
        print("| " + " | ".join([row["method"], *cells, *tail]) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
