"""Learning curves: validation fooling against optimizer steps, one line per training run.

Reads the `metrics.csv` that Lightning's CSVLogger writes into each run folder (train with
`--trainer.logger pytorch_lightning.loggers.CSVLogger --trainer.logger.save_dir RUN`) and
draws `val/top1_fooled` and `val/top5_fooled` (the whole held-out split, each protected photo
saved as a real JPEG and classified) against the global step. Prints a Markdown table of
every validation point.

    python bench/learning_curves.py --run "pure 4/255=runs/pure_eps4" --run "pure 8/255=runs/pure_eps8" \
        --out bench/out/learning_curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def validation_points(run: Path) -> list[dict[str, float]]:
    """Rows of every metrics.csv under ``run`` that carry a validation result, by step."""
    files = sorted(run.glob("**/metrics.csv"))
    if not files:
        raise SystemExit(f"{run}: no metrics.csv (train with the CSVLogger, see this script's docstring)")
    points = []
    for path in files:
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                if row.get("val/top1_fooled"):
                    points.append({key: float(value) for key, value in row.items() if value})
    return sorted(points, key=lambda p: p["step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=RUN_DIR")
    parser.add_argument("--out", type=Path, default=Path("bench/out/learning_curves.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    print("| run | step | val top-1 fooled | val top-5 fooled | PSNR dB |")
    print("|---|---|---|---|---|")
    for spec in args.run:
        label, _, run = spec.partition("=")
        points = validation_points(Path(run))
        steps = [p["step"] for p in points]
        for ax, key in zip(axes, ("val/top1_fooled", "val/top5_fooled")):
            ax.plot(steps, [100 * p[key] for p in points], marker="o", label=label)
        for p in points:
            print(f"| {label} | {int(p['step'])} | {p['val/top1_fooled']:.1%} | {p['val/top5_fooled']:.1%} "
                  f"| {p.get('val/psnr', float('nan')):.2f} |")
    for ax, title in zip(axes, ("top-1", "top-5")):
        ax.set_xlabel("optimizer steps (batch 16)")
        ax.set_title(f"held-out photos, {title} fooled on the saved JPEG")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fooled (%)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
