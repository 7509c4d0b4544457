r"""Protection under the views a classifier meets: methods x views, on the written files.

Each method protects the same photos through `protector protect` (the product's own path:
decode, protect, JPEG q90, atomic write), and every written file is then classified as a
classifier would really see it under each view of ``protector.views.EVALUATION_VIEWS``
(PIL's resize, a real JPEG re-encode), against the original's prediction under the same view
(``protector.evaluation.views.score_views``). The control row is the original re-saved as
JPEG q90: what re-encoding alone changes. PSNR is the written file against the original.

    python bench/views_table.py --photos fullsize-heldout --method "today=--protector runs/standin_plain/protector.pt \
        --views as-is --refine-steps 2" --method "eot-pgd-10=--refine-steps 10"

``--untrained-of FILE`` adds a row for the same generator as FILE's, untrained (seed 0, saved to
the output folder) and used with the same flags as the method named ``trained``: what training adds.

    python bench/views_table.py --photos fullsize-heldout --skip 10 --limit 20 \
        --untrained-of runs/fullsize_views/protector.pt \
        --method "trained=--protector runs/fullsize_views/protector.pt --refine-steps 0" \
        --method "eot-pgd-1=--refine-steps 1" --method "eot-pgd-10=--refine-steps 10"

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
from protector.export import load_protector, save_protector
from protector.generator import BoundedProtector
from protector.evaluation.views import jpeg_round_trip, score_views
from protector.images import read_photo
from protector.protect import protect
from protector.views import EVALUATION_VIEWS, View

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


def untrained_copy(trained: Path, out: Path) -> Path:
    """An untrained generator of `trained`'s class and settings (seed 0), saved as a protector file."""
    protector = load_protector(trained)
    torch.manual_seed(0)
    generator = type(protector.generator)(**protector.generator.config)
    out.mkdir(parents=True, exist_ok=True)
    return save_protector(out / "untrained_protector.pt", BoundedProtector(generator, protector.eps),
                          {"note": f"untrained, the architecture of {trained.name}"})


def with_untrained(methods: list[str], untrained: Path) -> list[str]:
    """The method named ``trained`` once more as ``untrained``, with the untrained file in its place."""
    trained = [m for m in methods if m.partition("=")[0] == "trained"]
    if len(trained) != 1:
        raise SystemExit("--untrained-of needs exactly one --method named trained=...")
    flags = shlex.split(trained[0].partition("=")[2])
    at = flags.index("--protector") + 1
    flags[at] = str(untrained)
    return methods + ["untrained=" + shlex.join(flags)]


def plot_rows(rows: list[dict], title: str, path: Path) -> None:
    """Top-1 changed per view, a line per method, the issue's 95% goal dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows[0]["views"])
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for row in rows:
        control = row["method"].startswith("control")
        seconds = "" if control else f" ({row['seconds_per_photo']:.1f} s/photo)"
        ax.plot(names, [100 * row["views"][n][0] for n in names], marker="o", label=row["method"] + seconds,
                color="#9aa0a6" if control else None, linestyle=":" if control else "-")
    ax.axhline(95, color="#d93025", linestyle="--", linewidth=1, label="goal: 95%")
    ax.set_ylabel("top-1 changed (%)")
    ax.set_ylim(-3, 103)
    ax.set_title(title, fontsize=10)
    ax.tick_params(axis="x", labelrotation=25, labelsize=8)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.spines[["top", "right"]].set_visible(False)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="fullsize-heldout", choices=("fullsize-heldout", "fullsize-tune", "standin256"))
    parser.add_argument("--list", type=Path, help="photo names for standin256")
    parser.add_argument("--limit", type=int)
    parser.add_argument("--skip", type=int, default=0, help="leave out the set's first N photos")
    parser.add_argument("--method", action="append", required=True, metavar="NAME=FLAGS")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/views")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--plot", type=Path, help="also draw top-1 changed per view and method into this PNG")
    parser.add_argument("--between-sides", default="", metavar="N,N,...",
                        help="also score these shorter sides (sizes no view set lists: does the protection hold "
                             "between the sizes it was computed for?)")
    parser.add_argument("--untrained-of", type=Path, metavar="PROTECTOR",
                        help="add the method named trained once more with this protector's generator untrained")
    args = parser.parse_args()
    if args.untrained_of:
        args.method = with_untrained(args.method, untrained_copy(args.untrained_of, args.out))

    views = list(EVALUATION_VIEWS) + [View(f"short-{side}", shorter_side=int(side))
                                      for side in args.between_sides.split(",") if side]
    photos = photo_set(args.photos, args.limit, args.list, args.skip)
    originals = [read_photo(p).pixels for p in photos]
    model = build_classifier("standin")
    device = torch.device("cpu")
    rows = []
    control = score_views(model, originals, [jpeg_round_trip(p, 90) for p in originals], views, device)
    rows.append({"method": "control (JPEG q90 only)", "views": {s.view: [s.top1_changed, s.top5_changed] for s in control}})
    for spec in args.method:
        name, _, flags = spec.partition("=")
        files, seconds = run_method(flags, photos, args.out / args.photos / name)
        protected = [read_photo(f).pixels for f in files]
        scores = score_views(model, originals, protected, views, device)
        psnr = statistics.median(fidelity(o, p).psnr for o, p in zip(originals, protected))
        rows.append({"method": name, "flags": flags, "seconds_per_photo": seconds, "psnr_median": psnr,
                     "views": {s.view: [s.top1_changed, s.top5_changed] for s in scores}})
        print(json.dumps(rows[-1]), flush=True)
    header = ["method"] + [v.name for v in views] + ["PSNR dB", "s/photo"]
    print(f"\n{len(photos)} photos ({args.photos}), stand-in classifier, top-1 / top-5 changed (%):\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        cells = [f"{100 * t1:.0f} / {100 * t5:.0f}" for t1, t5 in row["views"].values()]
        tail = [f"{row['psnr_median']:.1f}", f"{row['seconds_per_photo']:.2f}"] if "psnr_median" in row else ["", ""]
        print("| " + " | ".join([row["method"], *cells, *tail]) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot_rows(rows, f"{len(photos)} photos ({args.photos}), stand-in classifier, 2/255, JPEG q90 files", args.plot)


if __name__ == "__main__":
    main()
