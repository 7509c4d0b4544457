"""Every protection method side by side on the stand-in, measured on the saved JPEG files.

One run, one evaluation set, one file pipeline: each method's output is written as JPEG
(quality 90), read back from disk and classified by the stand-in; "fooled" is against the
clean prediction. The evaluation set is the held-out split of `configs/standin.yaml`,
restricted to photos the stand-in classifies with top-1 probability >= 0.3 and whose
prediction survives re-encoding the *clean* photo as JPEG (../shared/standin/README.md).

Methods, at every budget of `--eps-255` (default 2, 4, 8):
- each `--protector NAME=PATH` at its own budget (one forward pass; a guided one also
  queries the stand-in's gradient), the same generator untrained (what training adds) and,
  for a guided protector, the trained one followed by `--refine-steps` white-box steps;
- a universal perturbation (`bench/universal.py`): one pattern for every photo, trained on
  the same training photos through the same differentiable JPEG (cached in `--cache`);
- EOT-PGD-K, K in 1, 2, 10: sign steps on the top-5 margin through the differentiable JPEG
  at the output quality, from the clean photo (`protector.refine`);
- FGSM and PGD-10 from torchattacks, cross-entropy, no JPEG in the loop.

The attacks, the file writer, the classification of the re-read file and the fidelity
(scikit-image PSNR/SSIM) are the product's: `protector.evaluation.baselines`,
`protector.evaluation.scoring`, `protector.evaluation.fidelity`, as `protector evaluate` uses them.

Each row: top-1 / top-5 fooled, PSNR and SSIM of the saved file against the original,
NIMA-MobileNet (idealo, AVA; idealo preprocessing) change against the original, and the
median seconds per photo (one photo at a time, this machine) with the stand-in and, with
`--resnet50-photos N`, with the task's ResNet50 architecture (random weights: timing only)
as the attack model. Writes JSON, a Markdown table and a PNG of fooling rate against PSNR.

    python bench/protection_table.py --protector pure=runs/pure_eps4/protector.pt \
        --protector guided=runs/guided_eps2/protector.pt --out bench/out/protection_table.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml
from torchvision.models import resnet50
from universal import apply_universal, train_universal  # bench/universal.py

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier
from protector.data import TrainingDataModule
from protector.evaluation.baselines import baseline_attack, baseline_spec, write_attacked
from protector.evaluation.fidelity import fidelity
from protector.evaluation.scoring import nima_mean_std, run_batched, top_k
from protector.export import load_protector
from protector.generator import BoundedProtector
from protector.images import encode_photo, read_photo, to_tensor
from protector.nima import load_nima
from protector.refine import refine

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")  # the bench's timings are a 2-core CPU's

Attack = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Method:
    name: str  # e.g. "EOT-PGD-10"
    family: str  # one colour per family in the plot
    eps: float
    attack: Attack
    queries: str  # attack-model gradients per photo at protection time


def held_out_split(config: Path) -> TrainingDataModule:
    data_args = yaml.safe_load(config.read_text())["data"]
    datamodule = TrainingDataModule(**data_args.get("init_args", data_args))
    datamodule.setup("fit")
    return datamodule


def decode(datamodule: TrainingDataModule, entries) -> list[tuple[str, np.ndarray]]:
    source = datamodule.source
    return [(e.name, read_photo(source.read_bytes(e.name), name=e.name).pixels) for e in entries]


def jpeg_file(pixels: np.ndarray, quality: int) -> np.ndarray:
    return read_photo(encode_photo(pixels, "jpeg", quality=quality)).pixels


def clean_predictions(classifier, photos: list[tuple[str, np.ndarray]], batch: int = 32) -> torch.Tensor:
    return torch.stack(run_batched(classifier, [p for _, p in photos], CPU, batch)).argmax(1)


def select_eval_set(classifier, photos, quality: int, min_confidence: float):
    """Photos the stand-in is confident of and whose clean prediction survives JPEG."""
    pixels = [p for _, p in photos]
    clean = top_k(classifier, pixels, CPU, k=1, batch_size=1)  # one at a time, as the rows are measured
    chosen = []
    for (name, photo), [(label, confidence)] in zip(photos, clean):
        if confidence < min_confidence:
            continue
        if top_k(classifier, [jpeg_file(photo, quality)], CPU, k=1)[0][0][0] != label:
            continue
        chosen.append((name, photo, label))
    return chosen


def measure(method: Method, classifier, photos, quality: int, out_dir: Path) -> tuple[dict, list[np.ndarray]]:
    """Protect one photo at a time, save as JPEG, re-read from disk, classify; fidelity of the file
    (all as `protector evaluate` does it)."""
    method_dir = out_dir / f"{method.name}_eps{round(method.eps * 255)}".replace(" ", "_").replace("/", "-")
    method_dir.mkdir(parents=True, exist_ok=True)
    top1 = top5 = 0
    psnrs, ssims, seconds, saved_pixels = [], [], [], []
    for file_name, pixels, label in photos:
        x = to_tensor(pixels)[None]
        torch.manual_seed(0)  # PGD's random start
        start = time.perf_counter()
        x_adv = method.attack(x, torch.tensor([label]))
        seconds.append(time.perf_counter() - start)
        path = write_attacked(x_adv[0], method_dir / (Path(file_name).stem + ".jpg"), quality)
        saved_np = read_photo(path).pixels
        classes = [c for c, _ in top_k(classifier, [saved_np], CPU, k=5)[0]]
        top1 += int(classes[0] != label)
        top5 += int(label not in classes)
        measured = fidelity(pixels, saved_np)
        psnrs.append(measured.psnr)
        ssims.append(measured.ssim)
        saved_pixels.append(saved_np)
    n = len(photos)
    row = {
        "method": method.name, "family": method.family, "eps": method.eps, "eps_255": round(method.eps * 255, 3),
        "queries": method.queries, "n": n, "top1_fooled": top1 / n, "top5_fooled": top5 / n,
        "psnr_db": statistics.fmean(psnrs), "ssim": statistics.fmean(ssims),
        "s_per_image": statistics.median(seconds),
    }
    return row, saved_pixels


def resnet50_seconds(method: Method, photos, limit: int) -> float:
    """Median seconds per photo of ``method`` (built around ResNet50) on the first ``limit`` photos."""
    seconds = []
    for _, pixels, label in photos[: limit + 1]:
        x = to_tensor(pixels)[None]
        start = time.perf_counter()
        method.attack(x, torch.tensor([label]))
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[1:])  # the first call warms up


def nima_means(nima, images: list[np.ndarray], batch: int = 16) -> list[float]:
    return [mean for mean, _ in nima_mean_std(nima, images, CPU, batch)]


def no_grad(fn: Callable[[torch.Tensor], torch.Tensor]) -> Attack:
    def attack(x, y):
        with torch.no_grad():
            return fn(x)

    return attack


def protector_methods(name: str, protector: BoundedProtector, classifier, refine_steps: int, quality: int):
    """The trained protector, the same generator untrained (what training adds) and, for a
    guided one, the trained one followed by ``refine_steps`` white-box steps."""
    eps = float(protector.eps)
    protector.classifier = classifier
    kind = "guided" if protector.guided else "pure"
    queries = str(getattr(protector.generator, "queries", 1)) if protector.guided else "0"
    torch.manual_seed(0)
    untrained = BoundedProtector(type(protector.generator)(**protector.generator.config), eps, classifier).eval()
    yield Method(f"{name} untrained", f"generator ({kind}, untrained)", eps, no_grad(untrained), queries)
    yield Method(f"{name} generator", f"generator ({kind})", eps, no_grad(protector), queries)
    if not protector.guided:
        return

    yield Method(f"{name} + refine{refine_steps}", "generator + refine", eps,
                 refined(protector, classifier, refine_steps, quality), f"{queries}+{refine_steps}")


def refined(protector: BoundedProtector, classifier, steps: int, quality: int) -> Attack:
    """The protector, then `steps` white-box steps through JPEG, within the budget around its reference."""

    def attack(x, y):
        with torch.no_grad():
            reference = protector.reference(x)
            start = protector.perturb(reference, protector.scene_label(x))
        return refine(reference, start, classifier, y, protector.eps, steps=steps, jpeg_quality=quality)

    return attack


def universal_pattern(classifier, train_photos, train_labels, eps: float, steps: int, cache: Path) -> torch.Tensor:
    path = cache / f"universal_eps{eps * 255:.3g}_steps{steps}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)["delta"]
    started = time.perf_counter()
    delta = train_universal(classifier, train_photos, train_labels, eps, steps=steps)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"delta": delta, "eps": eps, "steps": steps, "seconds": time.perf_counter() - started}, path)
    return delta


def baseline_methods(classifier, eps: float, quality: int, delta: torch.Tensor):
    yield Method("universal perturbation", "universal perturbation", eps, no_grad(lambda x: apply_universal(x, delta)),
                 "0")
    for k in (1, 2, 10):
        eot_pgd = baseline_attack(baseline_spec("eot-pgd", eps, steps=k), classifier, CPU, jpeg_quality=quality)
        yield Method(f"EOT-PGD-{k}", "EOT-PGD (JPEG in the loss)", eps, eot_pgd, str(k))
    yield Method("FGSM (no JPEG in the loop)", "FGSM / PGD, no JPEG in the loop", eps,
                 baseline_attack(baseline_spec("fgsm", eps), classifier, CPU), "1")
    yield Method("PGD-10 (no JPEG in the loop)", "FGSM / PGD, no JPEG in the loop", eps,
                 baseline_attack(baseline_spec("pgd", eps), classifier, CPU), "10")


def plot(rows: list[dict], path: Path) -> None:
    """Fooling rate against PSNR: one colour and line per method across budgets, marker = budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["method"] for r in rows))
    markers = {2: "o", 4: "s", 8: "^"}
    colours = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, 2, figsize=(14, 7.5), sharey=True)
    for ax, key, title in ((axes[0], "top1_fooled", "top-1"), (axes[1], "top5_fooled", "top-5")):
        for i, name in enumerate(names):
            series = sorted((r for r in rows if r["method"] == name), key=lambda r: r["eps"])
            seconds = statistics.median(r["s_per_image"] for r in series)
            resnet = [r["s_per_image_resnet50"] for r in series if "s_per_image_resnet50" in r]
            timing = f"{seconds:.3f} s" + (f", ResNet50 {statistics.median(resnet):.2f} s" if resnet else "")
            ax.plot([r["psnr_db"] for r in series], [100 * r[key] for r in series], color=colours(i % 20),
                    linewidth=0.8, alpha=0.6)
            for r in series:
                ax.scatter(r["psnr_db"], 100 * r[key], color=colours(i % 20),
                           marker=markers.get(round(r["eps_255"]), "x"), s=60, edgecolor="black", linewidth=0.5,
                           label=f"{name} ({timing})" if r is series[0] else None)
        ax.set_xlabel("PSNR of the saved JPEG q90 vs the original (dB)")
        ax.set_title(f"{title} fooled on the saved file (o 2/255, s 4/255, ^ 8/255)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("photos fooled (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8,
               title="method (median s/img on a 2-core CPU, stand-in / ResNet50 as the attack model)")
    fig.tight_layout(rect=(0, 0.2, 1, 1))
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protector", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--eps-255", type=float, nargs="+", default=[2, 4, 8], help="budgets of the baselines")
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--min-confidence", type=float, default=0.3)
    parser.add_argument("--refine-steps", type=int, default=2)
    parser.add_argument("--universal-steps", type=int, default=600)
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--limit", type=int, default=None, help="first N held-out photos only (a quick check)")
    parser.add_argument("--resnet50-photos", type=int, default=0,
                        help="also time every method with ResNet50 (random weights) as the attack model on N photos")
    parser.add_argument("--cache", type=Path, default=REPO / "bench/out/universal")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/protection_table.json")
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON of --out")
    args = parser.parse_args()
    if args.replot:
        plot(json.loads(args.out.read_text())["rows"], args.out.with_suffix(".png"))
        return

    classifier = FrozenClassifier(build_classifier("standin"))
    datamodule = held_out_split(args.config)
    held_out = decode(datamodule, datamodule.val_entries[: args.limit])
    photos = select_eval_set(classifier, held_out, args.quality, args.min_confidence)
    print(f"evaluation set: {len(photos)} of {len(held_out)} held-out photos (confident and JPEG-stable)", flush=True)

    train = decode(datamodule, datamodule.train_entries)
    train_photos = torch.stack([torch.from_numpy(p).permute(2, 0, 1) for _, p in train])  # (N, 3, H, W) uint8
    train_labels = clean_predictions(classifier, train)

    protectors = [(name, load_protector(path).eval()) for name, _, path in (p.partition("=") for p in args.protector)]
    deltas = {
        eps_255: universal_pattern(classifier, train_photos, train_labels, eps_255 / 255, args.universal_steps, args.cache)
        for eps_255 in args.eps_255
    }

    def all_methods(attack_model) -> list[Method]:
        methods: list[Method] = []
        for name, protector in protectors:
            methods += protector_methods(name, protector, attack_model, args.refine_steps, args.quality)
        for eps_255, delta in deltas.items():
            methods += baseline_methods(attack_model, eps_255 / 255, args.quality, delta)
        return sorted(methods, key=lambda m: m.eps)

    methods = all_methods(classifier)

    nima = load_nima(args.nima, preprocess="idealo")
    originals = [p for _, p, _ in photos]
    nima_before = nima_means(nima, originals)
    nima_jpeg = statistics.fmean(nima_means(nima, [jpeg_file(p, args.quality) for p in originals]))
    out_dir = args.out.parent / "protection_files"
    rows = []
    for method in methods:
        row, saved = measure(method, classifier, photos, args.quality, out_dir)
        row["nima_change"] = statistics.fmean(a - b for a, b in zip(nima_means(nima, saved), nima_before))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.resnet50_photos:
        torch.manual_seed(0)
        attack_model = FrozenClassifier(resnet50(num_classes=365))
        for row, method in zip(rows, all_methods(attack_model)):
            row["s_per_image_resnet50"] = resnet50_seconds(method, photos, args.resnet50_photos)
            print(f"{method.name} {row['eps_255']:g}/255 with ResNet50: {row['s_per_image_resnet50']:.3f} s/img",
                  flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"quality": args.quality, "n_eval": len(photos), "nima": nima.name, "nima_preprocess": "idealo",
              "nima_before": statistics.fmean(nima_before), "nima_change_jpeg_only": nima_jpeg - statistics.fmean(
                  nima_before), "rows": rows}
    args.out.write_text(json.dumps(result, indent=2))
    plot(rows, args.out.with_suffix(".png"))
    print(f"\n{len(photos)} photos; NIMA before {result['nima_before']:.3f}, JPEG q{args.quality} alone "
          f"{result['nima_change_jpeg_only']:+.3f}\n")
    print("| method | eps | top-1 fooled | top-5 fooled | PSNR dB | SSIM | NIMA change | gradients/photo "
          "| s/img stand-in | s/img ResNet50 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        resnet = f"{r['s_per_image_resnet50']:.3f}" if "s_per_image_resnet50" in r else "-"
        print(f"| {r['method']} | {r['eps_255']:g}/255 | {r['top1_fooled']:.1%} | {r['top5_fooled']:.1%} "
              f"| {r['psnr_db']:.2f} | {r['ssim']:.3f} | {r['nima_change']:+.3f} | {r['queries']} "
              f"| {r['s_per_image']:.3f} | {resnet} |")
    print(f"\nwritten {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
