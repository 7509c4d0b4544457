"""Cost of a few-KB photo claiming many pixels: read_photo + float tensor, with and without the bound.

A one-colour lossless WebP of SIDE x SIDE pixels is a few KB. `off` disables the pixels-per-byte
bound of protector/limits.py (as before reliability round 3), `on` keeps it. One process per case
(peak memory is per process):

    for s in 2048 4096 8000 9000; do for g in off on; do PYTHONPATH=. python bench/pixel_cost.py $s $g; done; done
"""
import argparse
import io
import resource
import time

from PIL import Image

import protector.images as images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("side", type=int, help="width and height of the photo, pixels")
    parser.add_argument("guard", choices=("off", "on"), help="the pixels-per-byte bound")
    args = parser.parse_args()
    side, guard = args.side, args.guard == "on"
    if not guard:
        images.pixel_cost_problem = lambda *a: None
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 200)).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        photo = images.read_photo(data, name="flat.webp")
        images.to_tensor(photo.pixels)
        outcome = "decoded to a float tensor"
    except images.ImageReadError as e:
        outcome = "refused: " + str(e)[:70] + "..."
    dt = time.perf_counter() - t
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(f"| {side}x{side} ({side*side/1e6:.0f} MP) | {len(data):,} | {'on' if guard else 'off'} | {dt:.2f} s "
          f"| {peak_mib:.0f} MiB | {outcome} |")


if __name__ == "__main__":
    main()
