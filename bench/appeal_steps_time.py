"""Seconds the per-photo appeal steps add, at a stand-in photo's size and at 12 MP.

The trained edit alone and the same edit refined by K steps (`protect --appeal-steps K`, as
`protector.appeal_steps.with_appeal_steps` builds it), each photo timed `--repeats` times, the
median kept. The large photo is a full-size photo upscaled (bicubic) to `--size`, as
../shared/fullsize/README.md suggests for a 12 MP case.

    python bench/appeal_steps_time.py --appeal runs/appeal_stable/protector.pt --steps 20 \
        --small $(head -8 runs/eval102.txt | sed 's|^|../shared/standin/images/|') \
        --large ../shared/fullsize/urban100_img_002.jpg
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from protector.appeal_steps import with_appeal_steps
from protector.export import load_protector
from protector.images import read_photo, to_tensor

REPO = Path(__file__).resolve().parent.parent


def seconds(edit: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        with torch.no_grad():
            edit(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appeal", type=Path, required=True, help="an appeal protector.pt (with an edit)")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--small", type=Path, nargs="+", required=True, help="photos timed at their own size")
    parser.add_argument("--large", type=Path, required=True, help="a photo upscaled to --size")
    parser.add_argument("--size", type=int, nargs=2, default=[4000, 3000], metavar=("W", "H"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    enhancer = load_protector(args.appeal).enhancer
    if enhancer is None:
        raise SystemExit(f"{args.appeal}: this protector has no enhancer")
    stepped = with_appeal_steps(enhancer, args.steps, args.nima, 90)
    large_image = Image.fromarray(read_photo(args.large).pixels).resize(tuple(args.size), Image.BICUBIC)
    large = to_tensor(np.array(large_image))[None]
    print(f"{args.threads} threads, {args.steps} steps, median of {args.repeats}")
    print("| photo | edit alone s | edit + steps s | steps add s |")
    print("|---|---|---|---|")
    rows = [(f"{path.name} {x.shape[-1]}x{x.shape[-2]}", x)
            for path, x in ((path, to_tensor(read_photo(path).pixels)[None]) for path in args.small)]
    rows.append((f"{args.large.name} upscaled to {large.shape[-1]}x{large.shape[-2]}", large))
    added = []
    for name, x in rows:
        alone, with_steps = seconds(enhancer.eval(), x, args.repeats), seconds(stepped, x, args.repeats)
        added.append(with_steps - alone)
        print(f"| {name} | {alone:.2f} | {with_steps:.2f} | {with_steps - alone:+.2f} |", flush=True)
    print(f"steps add, median over the {len(args.small)} small photos: {statistics.median(added[:-1]):.2f} s")


if __name__ == "__main__":
    main()
