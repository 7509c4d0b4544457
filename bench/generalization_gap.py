"""Does the pure generator fail to generalize, or fail to fit? Training vs held-out photos.

For one protector, on the photos of `configs/standin.yaml`'s split (the first `--n` of each
side; `--limit` trains-side subset as `data.limit` picks it), each protected photo written as
JPEG q90 and read back:
- whole photos, fooled against the whole photo's clean prediction: held-out vs training;
- the centre 128 px window of each photo protected on its own and labelled with the whole
  photo's prediction, as training sees windows; and how often the *clean* window is already
  classified as something else (the share of training windows that start out "fooled").

    python bench/generalization_gap.py runs/pure_eps4/protector.pt
    python bench/generalization_gap.py runs/overfit64/protector.pt --limit 64
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from protection_table import clean_predictions, decode, jpeg_file

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier
from protector.data.training import TrainingDataModule
from protector.export import load_protector
from protector.images import to_tensor, to_uint8

REPO = Path(__file__).resolve().parent.parent


def saved(x: torch.Tensor, quality: int) -> torch.Tensor:
    return torch.stack([to_tensor(jpeg_file(pixels, quality)) for pixels in to_uint8(x)])


@torch.no_grad()
def fooling(protector, classifier, photos, quality: int, window: int = 128, batch: int = 32) -> dict[str, float]:
    labels = clean_predictions(classifier, photos)
    counts = np.zeros(3)
    for i in range(0, len(photos), batch):
        x = torch.stack([to_tensor(p) for _, p in photos[i : i + batch]])
        y = labels[i : i + batch]
        top = (x.shape[-2] - window) // 2
        left = (x.shape[-1] - window) // 2
        centre = x[..., top : top + window, left : left + window]
        counts += [
            (classifier(saved(protector(x), quality)).argmax(1) != y).sum().item(),
            (classifier(saved(protector(centre), quality)).argmax(1) != y).sum().item(),
            (classifier(centre).argmax(1) != y).sum().item(),
        ]
    whole, window_fooled, window_off = counts / len(photos)
    return {"whole": whole, "window": window_fooled, "clean window off the label": window_off}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("protector", type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--limit", type=int, help="the data.limit the protector was trained with")
    parser.add_argument("--n", type=int, default=302, help="photos per side")
    parser.add_argument("--quality", type=int, default=90)
    args = parser.parse_args()

    data = yaml.safe_load(args.config.read_text())["data"]
    if args.limit:
        data["limit"] = args.limit
    datamodule = TrainingDataModule(**data)
    datamodule.setup("fit")
    classifier = FrozenClassifier(build_classifier("standin"))
    protector = load_protector(args.protector)
    protector.attach_classifier(classifier)
    print(f"{args.protector} (eps {protector.eps * 255:.3g}/255), JPEG q{args.quality} on disk")
    for side, entries in (("held-out", datamodule.val_entries), ("training", datamodule.train_entries)):
        photos = decode(datamodule, entries[: args.n])
        rates = fooling(protector, classifier, photos, args.quality)
        print(f"{side:9s} ({len(photos)} photos): " + "  ".join(f"{k} {v:.1%}" for k, v in rates.items()))


if __name__ == "__main__":
    main()
