"""How much NIMA can the enhancer's edit families gain, at best? A per-photo upper bound.

For each photo the edit is optimized directly against NIMA (no network to generalize: a
`ToneCurveEnhancer` whose head weights stay zero, so its bias *is* the photo's edit), with the
appeal objective training uses (`NimaAppeal`: minus the NIMA mean plus the tint penalty),
`--steps` Adam steps. The edited photo is rounded to 8 bits and scored as PNG and as JPEG q90
(what is published); PSNR against the original says how far the edit went. A trained
enhancer predicts its edit from a thumbnail and cannot beat this bound on these photos.

    python bench/eval_set.py --out runs/eval102.txt
    python bench/appeal_ceiling.py --list runs/eval102.txt --n 24
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from protection_table import jpeg_file  # bench/protection_table.py

from protector.appeal_loss import NimaAppeal
from protector.enhance import ToneCurveEnhancer
from protector.evaluation.fidelity import fidelity
from protector.images import read_photo, to_tensor, to_uint8

REPO = Path(__file__).resolve().parent.parent
FAMILIES = {  # name -> ToneCurveEnhancer arguments
    "curves, unbounded": {},
    "curves, max_shift 0.1": {"max_shift": 0.1},
    "curves, max_shift 0.2": {"max_shift": 0.2},
    "curves 0.2 + saturation 0.3": {"max_shift": 0.2, "saturation": 0.3},
    "curves 0.2 + saturation 0.3 + sharpen 1.0": {"max_shift": 0.2, "saturation": 0.3, "sharpen": 1.0},
    # configs/overlays/appeal.yaml: one tone curve, channels within 0.03 of it, half the sharpening
    "shipped: tone 0.2, colour 0.03, saturation 0.3, sharpen 0.5":
        {"max_shift": 0.2, "colour_shift": 0.03, "saturation": 0.3, "sharpen": 0.5},
}


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    return to_tensor(jpeg_file(to_uint8(x[0]), quality))[None]


def best_edit(photo: torch.Tensor, family: dict, appeal: NimaAppeal, steps: int, lr: float) -> torch.Tensor:
    """The photo under the edit of `family` that `steps` Adam steps found best for NIMA."""
    enhancer = ToneCurveEnhancer(**family)
    enhancer.requires_grad_(False)
    enhancer.head.bias.requires_grad_(True)  # weights stay zero: the bias is this photo's edit
    optimizer = torch.optim.Adam([enhancer.head.bias], lr=lr)
    for _ in range(steps):
        loss, _ = appeal(enhancer(photo), photo)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return enhancer(photo)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, required=True, help="photo names, one a line (bench/eval_set.py)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/standin/images")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--n", type=int, default=24, help="first N photos of the list")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [line.strip() for line in args.list.read_text().splitlines() if line.strip()][: args.n]
    photos = [to_tensor(read_photo(args.images / name).pixels)[None] for name in names]
    appeal = NimaAppeal(str(args.nima)).eval()
    with torch.no_grad():
        original = [appeal.scores(p).item() for p in photos]
        control = [appeal.scores(jpeg(p, args.quality)).item() for p in photos]
    print(f"{len(photos)} photos, NIMA ({appeal.nima.name}): original {statistics.fmean(original):.3f}, "
          f"JPEG q{args.quality} control {statistics.fmean(control) - statistics.fmean(original):+.3f}")
    print("| edit family | NIMA change, PNG | NIMA change, JPEG | worst photo, JPEG | median PSNR dB | s/photo |")
    print("|---|---|---|---|---|---|")
    results = {"photos": len(photos), "nima": appeal.nima.name, "original": statistics.fmean(original),
               "jpeg_control": statistics.fmean(control), "families": {}}
    for name, family in FAMILIES.items():
        started = time.perf_counter()
        png_change, jpeg_change, psnr = [], [], []
        for photo, before in zip(photos, original):
            edited = best_edit(photo, family, appeal, args.steps, args.lr)
            with torch.no_grad():
                png_change.append(appeal.scores(edited).item() - before)
                jpeg_change.append(appeal.scores(jpeg(edited, args.quality)).item() - before)
            psnr.append(fidelity(to_uint8(photo[0]), to_uint8(edited[0])).psnr)
        seconds = (time.perf_counter() - started) / len(photos)
        row = {"png": statistics.fmean(png_change), "jpeg": statistics.fmean(jpeg_change),
               "jpeg_worst": min(jpeg_change), "psnr_median": statistics.median(psnr), "s_per_photo": seconds}
        results["families"][name] = {"arguments": family, **row}
        print(f"| {name} | {row['png']:+.3f} | {row['jpeg']:+.3f} | {row['jpeg_worst']:+.3f} | "
              f"{row['psnr_median']:.1f} | {seconds:.1f} |", flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
