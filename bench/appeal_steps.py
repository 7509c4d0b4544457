"""Per-photo appeal steps: what K steps per photo buy, per edit family, and at what cost.

For each family (a set of `protector.appeal_steps.AppealSteps` arguments) and each number of
steps, every photo is edited (from the trained enhancer's edit with `--appeal`, else from the
photo itself), rounded to 8 bits and saved as JPEG q90, as published; then scored: NIMA
change against the original (NIMA-MobileNet, idealo weights and preprocessing), BRISQUE
(independent, lower is better), median PSNR against the original, seconds per photo for the
whole edit (the steps, on a copy of 256 px short side for larger photos, plus the full-size application). With many steps
from the photo itself this is the per-photo bound of the family.

    python bench/eval_set.py --out runs/eval102.txt
    python bench/appeal_steps.py --list runs/eval102.txt --n 24 --steps 40 \
        --family tone: --family tone+sat:saturation=0.3 --family tone+sat+grid:saturation=0.3,grid=3
    python bench/appeal_steps.py --list runs/eval102.txt --appeal runs/appeal_stable/protector.pt --steps 0 10 20 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from protector.appeal_steps import AppealSteps
from protector.evaluation.fidelity import fidelity
from protector.evaluation.quality import brisque_scores
from protector.images import encode_photo, read_photo, to_tensor, to_uint8
from protector.losses import NimaAppeal

REPO = Path(__file__).resolve().parent.parent


def family(spec: str) -> tuple[str, dict[str, float]]:
    """'name:key=value,key=value' -> (name, {key: value})."""
    name, _, rest = spec.partition(":")
    arguments = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        arguments[key] = int(value) if key in ("grid", "knots", "work_size") else float(value)
    return name, arguments


def jpeg_pixels(x: torch.Tensor, quality: int):
    return read_photo(encode_photo(to_uint8(x[0]), "jpeg", quality=quality)).pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", type=Path, required=True, help="photo names, one a line (bench/eval_set.py)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/standin/images")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--appeal", type=Path, help="an appeal protector.pt: start from its trained edit")
    parser.add_argument("--n", type=int, default=24, help="first N photos of the list")
    parser.add_argument("--steps", type=int, nargs="+", default=[20])
    parser.add_argument("--family", dest="families", action="append", type=family,
                        help="NAME:key=value,... AppealSteps arguments; default: the module's defaults")
    parser.add_argument("--edit-weight", type=float, default=0.05, help="NimaAppeal's edit-size penalty")
    parser.add_argument("--colour-weight", type=float, default=1.0)
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [line.strip() for line in args.list.read_text().splitlines() if line.strip()][: args.n]
    photos = [to_tensor(read_photo(args.images / name).pixels)[None] for name in names]
    appeal = NimaAppeal(str(args.nima), colour_weight=args.colour_weight, edit_weight=args.edit_weight,
                        jpeg_quality=args.quality).eval()
    enhancer: nn.Module = nn.Identity()
    if args.appeal is not None:
        from protector.export import load_protector

        enhancer = load_protector(args.appeal).enhancer
        if enhancer is None:
            raise SystemExit(f"{args.appeal}: this protector has no enhancer")
    with torch.no_grad():
        original = [appeal.scores(p).item() for p in photos]
    brisque_before = statistics.fmean(brisque_scores([to_uint8(p[0]) for p in photos]))
    print(f"{len(photos)} photos, NIMA ({appeal.nima.name}) {statistics.fmean(original):.3f}, BRISQUE "
          f"{brisque_before:.2f}; start: {args.appeal or 'the photo'}; edit_weight {args.edit_weight}")
    print("| family | steps | NIMA change, JPEG | worst photo | BRISQUE | median PSNR dB | s/photo |")
    print("|---|---|---|---|---|---|---|")
    results = {"photos": len(photos), "nima": appeal.nima.name, "original": statistics.fmean(original),
               "brisque_original": brisque_before, "start": str(args.appeal), "edit_weight": args.edit_weight,
               "rows": []}
    for name, arguments in args.families or [("defaults", {})]:
        for steps in args.steps:
            editor = AppealSteps(enhancer, appeal, steps=steps, **arguments).eval()
            change, psnr, seconds, saved = [], [], [], []
            for photo, before in zip(photos, original):
                started = time.perf_counter()
                with torch.no_grad():
                    edited = editor(photo)
                seconds.append(time.perf_counter() - started)
                pixels = jpeg_pixels(edited, args.quality)
                saved.append(pixels)
                with torch.no_grad():
                    change.append(appeal.scores(to_tensor(pixels)[None]).item() - before)
                psnr.append(fidelity(to_uint8(photo[0]), pixels).psnr)
            row = {"family": name, "arguments": arguments, "steps": steps, "nima_change": statistics.fmean(change),
                   "worst": min(change), "brisque": statistics.fmean(brisque_scores(saved)),
                   "psnr_median": statistics.median(psnr), "s_per_photo": statistics.median(seconds)}
            results["rows"].append(row)
            print(f"| {name} | {steps} | {row['nima_change']:+.3f} | {row['worst']:+.3f} | {row['brisque']:.2f} | "
                  f"{row['psnr_median']:.1f} | {row['s_per_photo']:.2f} |", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
