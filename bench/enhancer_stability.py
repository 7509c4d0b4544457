"""Does the appeal edit stay a photo edit when trained longer? The enhancer alone, against NIMA.

The appeal overlay's enhancer and appeal loss (`configs/overlays/appeal.yaml`) trained on the
stand-in's training photos as in a fit (whole augmented photos, batch 16, AdamW), but with
no generator (the attack's gradient never reaches the edit anyway) and at a constant rate:
the rate a long fit (the MEPP19 config's 40 epochs, or 25 epochs on a GPU) keeps for
hundreds of steps, where the 5-epoch stand-in recipe decays it to zero by step 345. Every
`--every` steps the held-out photos are edited, saved as JPEG q90 and scored: NIMA change
against the originals (idealo preprocessing) and median PSNR against the originals. One run
per enhancer rate (`--lrs`) and edit-size weight (`--edit-weights`, `NimaAppeal(edit_weight=...)`);
each defaults to the overlay's. Each run also saves a PNG strip: originals over their edits.

    python bench/enhancer_stability.py --lrs 0.03 0.003 --edit-weights 0 0.05 --steps 300
    python bench/enhancer_stability.py --enhancer max_shift=0.2 --enhancer colour_shift=0.03 --enhancer saturation=0.3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from protection_table import decode, held_out_split, jpeg_file, nima_means

from protector.appeal_loss import NimaAppeal
from protector.enhance import ToneCurveEnhancer
from protector.evaluation.fidelity import fidelity
from protector.images import to_tensor, to_uint8

REPO = Path(__file__).resolve().parent.parent


def overlay_enhancer(changes: dict | None = None) -> tuple[ToneCurveEnhancer, float, dict]:
    """The enhancer (with `changes` to its arguments), its rate and the appeal loss's
    arguments, as the overlay ships them."""
    model = yaml.safe_load((REPO / "configs/overlays/appeal.yaml").read_text())["model"]
    enhancer = ToneCurveEnhancer(**{**model["enhancer"]["init_args"], **(changes or {})})
    return enhancer, float(model["enhancer_lr"]), dict(model["appeal"]["init_args"])


def key_value(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    return key, yaml.safe_load(value)


@torch.no_grad()
def score(enhancer, nima, held_out: list[np.ndarray], original_nima: list[float], quality: int) -> dict:
    published = [jpeg_file(to_uint8(enhancer(to_tensor(p)[None])[0]), quality) for p in held_out]
    nima_after = nima_means(nima, published)
    return {
        "nima_change": float(np.mean(nima_after) - np.mean(original_nima)),
        "psnr_db": float(np.median([fidelity(o, p).psnr for p, o in zip(published, held_out)])),
    }


def run(lr: float, edit_weight: float, args, train_loader, held_out, original_nima) -> list[dict]:
    torch.manual_seed(0)
    enhancer, _, appeal_args = overlay_enhancer(dict(args.enhancer))
    appeal_args.update(weights=str(args.nima), edit_weight=edit_weight)
    appeal = NimaAppeal(**appeal_args).eval()
    optimizer = torch.optim.AdamW(enhancer.parameters(), lr=lr, weight_decay=0.0)
    rows, step, started = [], 0, time.perf_counter()
    while step < args.steps:
        for batch in train_loader:
            photo = batch["image"]
            loss, _ = appeal(enhancer(photo), photo)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % args.every == 0 or step == args.steps:
                scores = score(enhancer, appeal.nima, held_out, original_nima, args.quality)
                row = {"lr": lr, "edit_weight": edit_weight, "step": step, **scores,
                       "seconds": round(time.perf_counter() - started, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
            if step == args.steps:
                break
    if args.gallery:  # first row the originals, second row their edits as published
        with torch.no_grad():
            edits = [jpeg_file(to_uint8(enhancer(to_tensor(p)[None])[0]), args.quality) for p in held_out[: args.gallery]]
        strip = np.concatenate([np.concatenate(held_out[: args.gallery], 1), np.concatenate(edits, 1)], 0)
        Image.fromarray(strip).save(args.out.with_name(f"{args.out.stem}_lr{lr:g}_w{edit_weight:g}.png"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--lrs", type=float, nargs="+", help="enhancer rates (default: the overlay's)")
    parser.add_argument("--enhancer", type=key_value, action="append", default=[], metavar="ARG=VALUE",
                        help="change one of the enhancer's arguments, e.g. saturation=0.3")
    parser.add_argument("--edit-weights", type=float, nargs="+", help="edit-size weights (default: the overlay's)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--held-out", type=int, default=64, help="first N held-out photos scored")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gallery", type=int, default=6, help="held-out photos in each run's PNG strip (0: none)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/enhancer_stability.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    datamodule = held_out_split(args.config)
    held_out = [pixels for _, pixels in decode(datamodule, datamodule.val_entries[: args.held_out])]
    _, overlay_lr, appeal_args = overlay_enhancer()
    nima = NimaAppeal(str(args.nima), preprocess=appeal_args.get("preprocess", "idealo")).nima
    original_nima = nima_means(nima, held_out)
    rows = [row for lr in args.lrs or [overlay_lr] for weight in args.edit_weights or [appeal_args.get("edit_weight", 0.0)]
            for row in run(lr, weight, args, datamodule.train_dataloader(), held_out, original_nima)]

    args.out.write_text(json.dumps(rows, indent=1))
    print("\n| enhancer lr | edit_weight | step | NIMA change (JPEG q90) | median PSNR dB |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['lr']:g} | {row['edit_weight']:g} | {row['step']} | {row['nima_change']:+.3f} | {row['psnr_db']:.1f} |")


if __name__ == "__main__":
    main()
