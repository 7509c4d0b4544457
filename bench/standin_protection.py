"""Protection of saved JPEG files against the stand-in classifier: generator vs FGSM / PGD-10.

Measured the way the task measures: each protected photo is written as JPEG, read back
from disk and classified. The evaluation set is the held-out split of
`configs/standin.yaml`, restricted to photos the stand-in classifies with top-1
probability >= 0.3 and whose prediction survives re-encoding the *clean* photo as JPEG
(see ../shared/standin/README.md). "Fooled" is against the clean prediction.

Besides the generator alone, measures the generator followed by `--refine-steps`
gradient steps (`protector protect --refine-steps`). Also times the generator against
torchattacks PGD-10, per image on this CPU, with the stand-in and with the ResNet50
architecture (random weights: timing only). A gradient-guided generator is timed with its
guide from the stand-in, and from ResNet50 for the ResNet50 ratio.

    python bench/standin_protection.py --protector eps2=runs/standin_eps2/protector.pt \
        --protector eps1=runs/standin_eps1/protector.pt --out bench/out/standin_protection.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchattacks
import yaml
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchvision.models import resnet50

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from protector.classifiers import ExternalClassifier, FrozenClassifier  # noqa: E402
from protector.data import ProtectorDataModule  # noqa: E402
from protector.export import load_protector  # noqa: E402
from protector.generator import BoundedProtector  # noqa: E402
from protector.images import encode_photo, read_photo, to_tensor, to_uint8  # noqa: E402
from protector.refine import refine  # noqa: E402


def held_out_entries(config: Path):
    data_args = yaml.safe_load(config.read_text())["data"]
    data_args = data_args.get("init_args", data_args)
    datamodule = ProtectorDataModule(**data_args)
    datamodule.setup("fit")
    return datamodule, datamodule.val_entries


def jpeg_roundtrip(pixels: np.ndarray, quality: int) -> np.ndarray:
    return read_photo(encode_photo(pixels, "jpeg", quality=quality)).pixels


@torch.no_grad()
def predict(classifier, pixels: np.ndarray) -> torch.Tensor:
    return classifier(to_tensor(pixels)[None])[0]


def select_eval_set(classifier, source, entries, quality: int, min_confidence: float):
    """Photos the stand-in is confident of and whose clean prediction survives JPEG."""
    chosen = []
    for entry in entries:
        pixels = read_photo(source.read_bytes(entry.name), name=entry.name).pixels
        probs = predict(classifier, pixels).softmax(-1)
        confidence, label = probs.max(-1)
        if confidence < min_confidence:
            continue
        if predict(classifier, jpeg_roundtrip(pixels, quality)).argmax().item() != label.item():
            continue
        chosen.append((entry.name, pixels, int(label)))
    return chosen


def measure(name, make_adv, classifier, photos, quality: int, out_dir: Path) -> dict:
    """Protect, save as JPEG, re-read from disk, classify; plus fidelity of the saved file."""
    method_dir = out_dir / name
    method_dir.mkdir(parents=True, exist_ok=True)
    top1 = top5 = 0
    psnrs, ssims, seconds = [], [], []
    for file_name, pixels, label in photos:
        x = to_tensor(pixels)[None]
        start = time.perf_counter()
        x_adv = make_adv(x, torch.tensor([label]))
        seconds.append(time.perf_counter() - start)
        path = method_dir / (Path(file_name).stem + ".jpg")
        path.write_bytes(encode_photo(to_uint8(x_adv[0]), "jpeg", quality=quality))
        saved = to_tensor(read_photo(path).pixels)[None]
        with torch.no_grad():
            logits = classifier(saved)[0]
        top1 += int(logits.argmax().item() != label)
        top5 += int(label not in logits.topk(5).indices.tolist())
        psnrs.append(peak_signal_noise_ratio(saved, x, data_range=1.0).item())
        ssims.append(structural_similarity_index_measure(saved, x, data_range=1.0).item())
    n = len(photos)
    return {
        "method": name,
        "n": n,
        "top1_fooled": top1 / n,
        "top5_fooled": top5 / n,
        "psnr_db": statistics.mean(psnrs),
        "ssim": statistics.mean(ssims),
        "median_s_per_image": statistics.median(seconds),
    }


def time_per_image(fn, x: torch.Tensor, y: torch.Tensor, repeats: int) -> float:
    fn(x, y)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x, y)
        times.append(time.perf_counter() - start)
    return statistics.median(times) / x.shape[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protector", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--min-confidence", type=float, default=0.3)
    parser.add_argument("--timing-repeats", type=int, default=5)
    parser.add_argument("--refine-steps", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N held-out photos only (a quick check)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/standin_protection.json")
    args = parser.parse_args()
    torch.manual_seed(0)

    classifier = FrozenClassifier(
        ExternalClassifier("squeezenet_places.StandinPlaces365", search_path=str(REPO.parent / "shared/standin"))
    )
    datamodule, entries = held_out_entries(args.config)
    entries = entries[: args.limit]
    photos = select_eval_set(classifier, datamodule.source, entries, args.quality, args.min_confidence)
    print(f"evaluation set: {len(photos)} of {len(entries)} held-out photos (confident and JPEG-stable)")
    out_dir = args.out.parent / "standin_files"

    rows = []
    for spec in args.protector:
        name, path = spec.split("=", 1)
        protector = load_protector(path).eval()
        protector.classifier = classifier  # used only by a gradient-guided generator
        eps = float(protector.eps)

        def generator_attack(x, y, protector=protector):
            with torch.no_grad():
                return protector(x)

        def refined_attack(x, y, protector=protector, eps=eps):
            with torch.no_grad():
                x_init = protector(x)
            return refine(x, x_init, classifier, y, eps, steps=args.refine_steps, jpeg_quality=args.quality)

        fgsm = torchattacks.FGSM(classifier, eps=eps)
        pgd = torchattacks.PGD(classifier, eps=eps, alpha=eps / 4, steps=10, random_start=True)
        methods = [
            (f"generator {name}", generator_attack),
            (f"generator+refine{args.refine_steps} {name}", refined_attack),
            (f"FGSM {name}", fgsm),
            (f"PGD-10 {name}", pgd),
        ]
        if protector.guided:
            # What training adds: the same generator untrained is a soft FGSM on the guide.
            torch.manual_seed(0)
            untrained = BoundedProtector(type(protector.generator)(**protector.generator.config), eps, classifier)
            untrained.eval()

            def untrained_attack(x, y, untrained=untrained):
                with torch.no_grad():
                    return untrained(x)

            methods.insert(1, (f"generator-untrained {name}", untrained_attack))
        for label, attack in methods:
            row = measure(label.replace(" ", "_"), attack, classifier, photos, args.quality, out_dir)
            row.update(method=label, eps=eps, eps_255=round(eps * 255, 3))
            rows.append(row)
            print(json.dumps(row))

        # Speed: generator vs PGD-10, on the stand-in and on the ResNet50 architecture.
        x = to_tensor(photos[0][1])[None].repeat(8, 1, 1, 1)
        y = torch.zeros(8, dtype=torch.long)
        resnet = FrozenClassifier(resnet50(num_classes=365))
        pgd_resnet = torchattacks.PGD(resnet, eps=eps, alpha=eps / 4, steps=10)
        speed = {
            "generator_s": time_per_image(generator_attack, x, y, args.timing_repeats),
            "generator_refine_s": time_per_image(refined_attack, x, y, args.timing_repeats),
            "pgd10_standin_s": time_per_image(pgd, x, y, args.timing_repeats),
            "pgd10_resnet50_s": time_per_image(pgd_resnet, x, y, max(1, args.timing_repeats // 2)),
        }
        speed["pgd10_standin_over_generator"] = speed["pgd10_standin_s"] / speed["generator_s"]
        speed["pgd10_resnet50_over_generator"] = speed["pgd10_resnet50_s"] / speed["generator_s"]
        if protector.guided:
            # On the task the guide comes from ResNet50: time the generator guided by it.
            protector.classifier = resnet
            speed["generator_guided_by_resnet50_s"] = time_per_image(generator_attack, x, y, args.timing_repeats)
            protector.classifier = classifier
            speed["pgd10_resnet50_over_generator"] = speed["pgd10_resnet50_s"] / speed["generator_guided_by_resnet50_s"]
        rows.append({"method": f"speed {name}", "eps": eps, **speed})
        print(json.dumps(rows[-1]))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"quality": args.quality, "n_eval": len(photos), "rows": rows}, indent=2))
    print(f"| method | eps | top-1 fooled | top-5 fooled | PSNR dB | SSIM | s/img |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "top1_fooled" in row:
            print(
                f"| {row['method']} | {row['eps_255']}/255 | {row['top1_fooled']:.1%} | {row['top5_fooled']:.1%} "
                f"| {row['psnr_db']:.2f} | {row['ssim']:.4f} | {row['median_s_per_image']:.3f} |"
            )


if __name__ == "__main__":
    main()
