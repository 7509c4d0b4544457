"""Files-to-files speed of `protector protect` for two protectors, alternated in one run.

Each round protects the same photos once with each protector (decode, enhance and perturb,
JPEG q90, atomic write, re-read check, manifest with the stand-in's clean logits), reading
the command's own "speed:" line (images/s over the protection pass, start-up excluded).
Reports each protector's median s/img and their ratio: the appeal goal is within 1.2x of
the plain protector.

    python bench/protect_speed_ratio.py --plain runs/standin_plain/protector.pt \\
        --other runs/appeal_curves/protector.pt --list runs/eval102.txt --rounds 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEED = re.compile(r"speed: ([\d.]+) images/s")


def images_per_second(protector: Path, args, output: Path) -> float:
    command = [sys.executable, "-m", "protector", "protect", "--protector", str(protector), "--images", str(args.images),
               "--list", str(args.list), "--output", str(output), "--classifier", "standin", "--no-progress",
               "--overwrite", "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    return float(SPEED.findall(done.stdout + done.stderr)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", type=Path, required=True)
    parser.add_argument("--other", type=Path, required=True, help="e.g. an appeal protector")
    parser.add_argument("--list", type=Path, required=True, help="photo names, one a line (bench/eval_set.py)")
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared/standin/images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    seconds = {"plain": [], "other": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name in seconds:
                rate = images_per_second(getattr(args, name), args, Path(tmp) / name)
                seconds[name].append(1 / rate)
                print(f"round {round_ + 1}: {name} {1000 / rate:.1f} ms/img", flush=True)
    plain, other = (statistics.median(seconds[name]) for name in seconds)
    print(json.dumps({"plain_s_per_img": round(plain, 4), "other_s_per_img": round(other, 4),
                      "ratio": round(other / plain, 3), "rounds": args.rounds}))


if __name__ == "__main__":
    main()
