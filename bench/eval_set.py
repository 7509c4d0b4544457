"""Write the names of the benchmark's evaluation photos, one a line, for `protector protect --list`.

The same photos as `bench/protection_table.py` and `bench/appeal_table.py` (the held-out
photos of `configs/standin.yaml` the stand-in is confident of and whose clean prediction
survives JPEG), so `protector protect` and `protector evaluate` can be run on exactly them:

    python bench/eval_set.py --out runs/eval102.txt
    protector protect --protector runs/appeal2/protector.pt --list runs/eval102.txt \
        --images ../shared/standin/images --output runs/appeal2/files --classifier standin
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from protection_table import decode, held_out_split, select_eval_set

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="list file to write")
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--min-confidence", type=float, default=0.3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    classifier = FrozenClassifier(build_classifier("standin"))
    datamodule = held_out_split(args.config)
    photos = select_eval_set(classifier, decode(datamodule, datamodule.val_entries), args.quality, args.min_confidence)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(f"{name}\n" for name, _, _ in photos))
    print(f"{len(photos)} photos -> {args.out}")


if __name__ == "__main__":
    main()
