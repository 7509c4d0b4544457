"""What `protector protect PHOTO` costs at 256 px, 1 MP and 12 MP: wall time and peak memory.

Each run is the user's command in a fresh process (`python -m protector protect PHOTO
--output ...`), timed with `/usr/bin/time -v` (wall clock, peak resident memory of the
process). Two attack models: the stand-in (`--classifier standin`) and the ResNet50
architecture the default uses (a randomly initialized ResNet50 in the official checkpoint
format, placed in a temporary user cache: the same code path and cost as the real one).
Photos: ../shared/fullsize/urban100_img_051.jpg resized (PIL bicubic) to 256x256, to
1 MP (1155x866) and to 12 MP (4000x3000), saved as JPEG q95.

    python bench/views_cost.py [--repeats 3] [--flags "--refine-steps 10"] [--photo urban100_img_074.jpg]

``--photo`` takes another of ../shared/fullsize: one that needs the extra steps (a view still
recognizes it after the refine steps) shows their cost.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SIZES = {"256x256": (256, 256), "1 MP": (1155, 866), "12 MP": (4000, 3000)}


def official_resnet50(path: Path) -> None:
    """A random ResNet50 saved like CSAIL's file (DataParallel keys, epoch/arch/state_dict)."""
    model = torchvision.models.resnet50(num_classes=365)
    state = {"module." + key: value for key, value in model.state_dict().items()}
    torch.save({"epoch": 90, "arch": "resnet50", "state_dict": state}, path, _use_new_zipfile_serialization=False)


def run_once(photo: Path, out: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, peak MiB) of one protect command in a fresh process."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "protector", "protect", str(photo), "--output", str(out),
               "--no-progress", "--overwrite", *extra]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"protect failed on {photo.name}:\n{result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):(\d+\.\d+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    peak_kib = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return hours * 3600 + minutes * 60 + seconds, peak_kib / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--flags", default="", help="extra protect flags for every run")
    parser.add_argument("--models", default="standin,resnet50")
    parser.add_argument("--photo", default="urban100_img_051.jpg", help="the photo of ../shared/fullsize to resize")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = Image.open(SHARED / "fullsize" / args.photo).convert("RGB")
        photos = {}
        for label, size in SIZES.items():
            photos[label] = work / f"photo-{label.replace(' ', '')}.jpg"
            source.resize(size, Image.Resampling.BICUBIC).save(photos[label], quality=95)
        cache = work / "cache"
        cache.mkdir()
        official_resnet50(cache / "resnet50_places365.pth.tar")
        env = {**os.environ, "PROTECTOR_CACHE": str(cache), "PROTECTOR_OFFLINE": "1"}
        models = {"standin": ["--classifier", "standin"], "resnet50": []}
        print(f"protect {args.flags or '(defaults)'}, {args.photo}; median of {args.repeats} runs\n")
        print("| attack model | photo | wall s (median) | x the 256x256 run | peak memory MiB |\n|---|---|---|---|---|")
        for model in args.models.split(","):
            base = None
            for label, photo in photos.items():
                runs = [run_once(photo, work / "out", models[model] + shlex.split(args.flags), env)
                        for _ in range(args.repeats)]
                wall = statistics.median(r[0] for r in runs)
                peak = max(r[1] for r in runs)
                base = wall if base is None else base
                print(f"| {model} | {label} | {wall:.1f} | {wall / base:.1f} | {peak:.0f} |", flush=True)


if __name__ == "__main__":
    main()
