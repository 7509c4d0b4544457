"""NIMA aesthetic score of photos before and after protection, with a JPEG-only control.

Protects the first `--n` photos of `--images` through the real path
(`protector.protect.protect`, JPEG q90 files written to disk), then scores with NIMA
(idealo's MobileNet trained on AVA, `protector.nima`):
- before: the original file, decoded;
- after: the protected file, decoded from disk;
- control: the original re-encoded as JPEG at the same quality with no perturbation, so
  the change caused by JPEG alone is separated from the change caused by the protector.
Reports the mean score before and after, and mean / median / std of the per-photo change
(after - before), of the control change (control - before) and of after - control.
The NIMA name and preprocessing preset go into the output: scores differ between presets.

    python bench/nima_change.py --protector runs/standin_eps2/protector.pt \
        --images ../shared/standin/images --nima ../shared/nima/weights_mobilenet_aesthetic_0.07.hdf5 \
        --preprocess idealo
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from protector.classifier_spec import build_classifier
from protector.export import load_protector
from protector.images import IMAGE_EXTENSIONS, Photo, encode_photo, read_photo, to_tensor
from protector.nima import NIMA, load_nima, nima_scores
from protector.protect import ProtectOptions, protect

REPO = Path(__file__).resolve().parents[1]


@torch.inference_mode()
def score(nima: NIMA, photos: list[Photo], batch: int) -> list[float]:
    """NIMA mean score of each photo; same-size neighbours go through together."""
    means: list[float] = []
    i = 0
    while i < len(photos):
        shape = photos[i].pixels.shape
        j = i + 1
        while j < len(photos) and j - i < batch and photos[j].pixels.shape == shape:
            j += 1
        x = torch.stack([to_tensor(p.pixels) for p in photos[i:j]])
        means.extend(nima_scores(nima(x))[0].tolist())
        i = j
    return means


def describe(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "median": statistics.median(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "mean_abs": statistics.fmean(abs(v) for v in values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protector", type=Path, required=True, help="protector.pt (trained on the stand-in)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/standin/images")
    parser.add_argument("--n", type=int, default=None, help="the first N photos sorted by name (default: all)")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--preprocess", choices=("idealo", "native"), default="idealo")
    parser.add_argument("--classifier", help="attack model of a gradient-guided protector, e.g. standin")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/nima_change.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    nima = load_nima(args.nima, preprocess=args.preprocess)
    protector = load_protector(args.protector)
    classifier = build_classifier(args.classifier) if args.classifier else None
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)[: args.n]
    if not files:
        raise SystemExit(f"{args.images}: no photos found")

    with tempfile.TemporaryDirectory(prefix="bench_nima_") as tmp:
        tmp = Path(tmp)
        (tmp / "in").mkdir()
        for f in files:
            (tmp / "in" / f.name).symlink_to(f.resolve())
        start = time.perf_counter()
        summary = protect(ProtectOptions(output=tmp / "out", protector=args.protector, inputs=[tmp / "in"],
                                         fmt="jpeg", quality=args.quality, batch_size=args.batch_size,
                                         progress=False), protector=protector, classifier=classifier)
        protect_s = time.perf_counter() - start
        if summary.failed:
            raise SystemExit(f"protection failed for {summary.failed} photos: {summary.failures[:3]}")
        with open(summary.manifest, newline="") as f:
            output_of = {Path(row["input"]).name: row["output"] for row in csv.DictReader(f)}

        originals = [read_photo(f) for f in files]
        protected = [read_photo(tmp / "out" / output_of[f.name]) for f in files]
        controls = [read_photo(encode_photo(p.pixels, "jpeg", args.quality)) for p in originals]
        start = time.perf_counter()
        before, after, control = (score(nima, photos, args.batch_size) for photos in (originals, protected, controls))
        nima_s = time.perf_counter() - start

    change = [a - b for a, b in zip(after, before)]
    result = {
        "nima": nima.name, "preprocess": args.preprocess, "nima_weights": args.nima.name,
        "protector": str(args.protector), "eps_255": protector.eps * 255, "images": str(args.images),
        "n": len(files), "quality": args.quality, "max_delta_8bit": summary.max_delta_8bit,
        "mean_before": statistics.fmean(before), "mean_after": statistics.fmean(after),
        "mean_control": statistics.fmean(control),
        "change": describe(change),
        "control_change": describe([c - b for c, b in zip(control, before)]),
        "after_minus_control": describe([a - c for a, c in zip(after, control)]),
        "seconds": {"protect": protect_s, "nima": nima_s},
        "per_image": [{"name": f.name, "before": b, "after": a, "jpeg_only": c}
                      for f, b, a, c in zip(files, before, after, control)],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}\n")
    print(f"{result['nima']}; protector eps {result['eps_255']:.3g}/255; JPEG q{args.quality}; "
          f"{len(files)} photos of {args.images.name}\n")
    print(f"| NIMA mean before | after | mean change | median change | std of change | mean abs change "
          f"| JPEG q{args.quality} alone: mean change | std |")
    print("|---|---|---|---|---|---|---|---|")
    c, j = result["change"], result["control_change"]
    print(f"| {result['mean_before']:.4f} | {result['mean_after']:.4f} | {c['mean']:+.4f} | {c['median']:+.4f} "
          f"| {c['std']:.4f} | {c['mean_abs']:.4f} | {j['mean']:+.4f} | {j['std']:.4f} |")
    d = result["after_minus_control"]
    print(f"\nprotected vs JPEG-only control: mean {d['mean']:+.4f}, median {d['median']:+.4f}, std {d['std']:.4f}")


if __name__ == "__main__":
    main()
