"""Appeal: the plain protector, the appeal protector, the edit alone and the JPEG control.

Same photos and protocol as `bench/protection_table.py` (the held-out photos of
`configs/standin.yaml` the stand-in is confident of and whose clean prediction survives
JPEG; every output written as JPEG q90, read back, classified): top-1/top-5 fooled against
the clean prediction, NIMA-MobileNet (idealo weights and preprocessing) mean and change
against the original photo, BRISQUE (an independent no-reference score, lower is better),
PSNR/SSIM against the original, seconds per photo. Both protectors also with
`--refine-steps` white-box steps after the generator (as `make run` protects; the budget
stays around each protector's reference), and the appeal protector at the larger budgets of
`--appeal-eps` (the same networks, the perturbation's bound raised after training): what it
needs to fool as often as the plain one. Also writes a gallery of a few photos: original |
edit alone | plain protector | appeal protector.

With `--appeal-steps K` the appeal protector also runs with its edit refined per photo
(`protector.appeal_steps`, as `protect --appeal-steps K` runs it): rows for that edit alone,
the protector around it, and with the refine steps. The refined edit of each photo is
computed once and reused by those rows; their s/img add its median time. `--refine-loss
sensitive_safe --senscats ...` refines as `make run` does.

    python bench/appeal_table.py --plain runs/standin/protector.pt --appeal runs/appeal/protector.pt
    python bench/appeal_table.py --plain runs/standin_plain/protector.pt --appeal runs/appeal_stable/protector.pt \
        --appeal-eps --appeal-steps 20 --refine-loss sensitive_safe --senscats ../shared/data/mepp/MEPP18senscats.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from protection_table import (
    Method,
    decode,
    held_out_split,
    measure,
    nima_means,
    no_grad,
    refined,
    select_eval_set,
)

from protector.appeal_steps import with_appeal_steps
from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier
from protector.evaluation.quality import IMPLEMENTATION as BRISQUE_NAME
from protector.evaluation.quality import brisque_scores
from protector.export import load_protector
from protector.generator import BoundedProtector
from protector.losses import attack_loss_by_name
from protector.nima import load_nima
from protector.refine import refine

REPO = Path(__file__).resolve().parent.parent

COLUMNS = ("method", "top1_fooled", "top5_fooled", "nima", "nima_change", "brisque", "psnr_db", "ssim", "s_per_image")


class CachedEdit(torch.nn.Module):
    """An edit computed once per photo (keyed by its pixels) and reused; records each first time."""

    def __init__(self, edit: torch.nn.Module) -> None:
        super().__init__()
        self.edit = edit
        self.cache: dict[str, torch.Tensor] = {}
        self.seconds: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = hashlib.sha1(x.detach().cpu().numpy().tobytes()).hexdigest()
        if key not in self.cache:
            started = time.perf_counter()
            self.cache[key] = self.edit(x)
            self.seconds.append(time.perf_counter() - started)
        return self.cache[key]


def refined_with(protector: BoundedProtector, classifier, steps: int, quality: int, loss):
    """The protector, then `steps` white-box steps descending `loss` through JPEG, around its reference."""

    def attack(x, y):
        with torch.no_grad():
            reference = protector.reference(x)
            start = protector.perturb(reference, protector.scene_label(x))
        return refine(reference, start, classifier, y, protector.eps, steps=steps, jpeg_quality=quality, loss=loss)

    return attack


def methods(plain, appeal, classifier, refine_steps: int, appeal_levels: list[float], quality: int,
            refine_loss=None, stepped: BoundedProtector | None = None):
    eps = appeal.eps
    suffix = f" + refine{refine_steps}" + ("" if refine_loss is None else f" {type(refine_loss).__name__}")
    yield Method("JPEG control (no protection)", "control", eps, no_grad(lambda x: x), "0")
    yield Method("edit alone (appeal enhancer, no perturbation)", "edit", eps, no_grad(appeal.enhancer), "0")
    if stepped is not None:
        yield Method(f"edit alone + {stepped.enhancer.edit.steps} appeal steps", "edit", eps,
                     no_grad(stepped.enhancer), "0")
    protectors = [("plain protector", plain)] if plain is not None else []
    protectors.append(("appeal protector", appeal))
    if stepped is not None:
        protectors.append((f"appeal protector + {stepped.enhancer.edit.steps} appeal steps", stepped))
    for name, protector in protectors:
        queries = "1" if protector.guided else "0"
        yield Method(name, name.split()[0], protector.eps, no_grad(protector), queries)
        if refine_steps:
            yield Method(f"{name}{suffix}", name.split()[0], protector.eps,
                         refined_with(protector, classifier, refine_steps, quality, refine_loss),
                         f"{queries}+{refine_steps}")
    for level in appeal_levels:
        wider = BoundedProtector(appeal.generator, level / 255, appeal.classifier, appeal.enhancer).eval()
        yield Method(f"appeal protector at {level:g}/255", "appeal", wider.eps, no_grad(wider), "1")


def gallery(columns: dict[str, list[np.ndarray]], path: Path, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(columns)
    fig, axes = plt.subplots(count, len(names), figsize=(2.6 * len(names), 2.6 * count))
    for row in range(count):
        for col, name in enumerate(names):
            ax = axes[row, col]
            ax.imshow(columns[name][row])
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, pil_kwargs={"quality": 90})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plain", type=Path, help="protector.pt trained without an enhancer (none: no plain rows)")
    parser.add_argument("--appeal", type=Path, required=True, help="protector.pt trained with an enhancer")
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--nima", type=Path, default=REPO.parent / "shared/nima/weights_mobilenet_aesthetic_0.07.hdf5")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--min-confidence", type=float, default=0.3)
    parser.add_argument("--refine-steps", type=int, default=2, help="0: no refined rows")
    parser.add_argument("--appeal-eps", type=float, nargs="*", default=[3.0], metavar="LEVELS",
                        help="more budgets for the appeal protector, in 8-bit levels")
    parser.add_argument("--appeal-steps", type=int, default=0, metavar="K",
                        help="also the appeal protector with its edit refined per photo by K steps")
    parser.add_argument("--refine-loss", default="topk", help="topk or sensitive_safe (needs --senscats)")
    parser.add_argument("--senscats", type=Path, help="MEPP18senscats.txt, for --refine-loss sensitive_safe")
    parser.add_argument("--limit", type=int, help="only the first N photos (a quick check)")
    parser.add_argument("--gallery-photos", type=int, default=5)
    parser.add_argument("--work", type=Path, default=REPO / "bench/out/appeal_files")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/appeal_table.json")
    parser.add_argument("--gallery", type=Path, default=REPO / "bench/plots/appeal_gallery.jpg")
    args = parser.parse_args()
    torch.set_num_threads(2)

    classifier = FrozenClassifier(build_classifier("standin"))
    datamodule = held_out_split(args.config)
    photos = select_eval_set(classifier, decode(datamodule, datamodule.val_entries), args.quality, args.min_confidence)
    photos = photos[: args.limit]
    print(f"evaluation set: {len(photos)} held-out photos (confident and JPEG-stable)", flush=True)
    plain = load_protector(args.plain) if args.plain else None
    appeal = load_protector(args.appeal)
    if appeal.enhancer is None:
        raise SystemExit(f"{args.appeal}: this protector has no enhancer")
    if plain is not None and plain.eps != appeal.eps:
        print(f"warning: budgets differ (plain {plain.eps * 255:.3g}/255, appeal {appeal.eps * 255:.3g}/255)")
    for protector in (plain, appeal):
        if protector is not None:
            protector.attach_classifier(classifier)

    stepped = None
    if args.appeal_steps:
        edit = CachedEdit(with_appeal_steps(appeal.enhancer, args.appeal_steps, args.nima, args.quality))
        stepped = BoundedProtector(appeal.generator, appeal.eps, classifier, edit).eval()
    refine_loss = None
    if args.refine_loss != "topk":
        refine_loss = attack_loss_by_name(args.refine_loss, top_k=5, kappa=2.0,
                                          sensitive=str(args.senscats) if args.senscats else None)

    nima = load_nima(args.nima)
    originals = [pixels for _, pixels, _ in photos]
    nima_before = nima_means(nima, originals)
    rows, files = [], {"original": originals}
    for method in methods(plain, appeal, classifier, args.refine_steps, args.appeal_eps, args.quality,
                          refine_loss, stepped):
        row, saved = measure(method, classifier, photos, args.quality, args.work)
        if "appeal steps" in method.name:
            row["steps_s_per_image"] = statistics.median(stepped.enhancer.seconds)
            if not method.name.startswith("edit alone"):  # the cached edit's time, once per photo
                row["s_per_image"] += row["steps_s_per_image"]
        scores = nima_means(nima, saved)
        row["nima"] = statistics.fmean(scores)
        row["nima_change"] = statistics.fmean(a - b for a, b in zip(scores, nima_before))
        row["brisque"] = statistics.fmean(brisque_scores(saved))
        rows.append(row)
        if method.name in ("edit alone (appeal enhancer, no perturbation)", "plain protector", "appeal protector") or (
                "appeal steps" in method.name and "refine" not in method.name):
            files[method.name.split(" (")[0]] = saved
        print(" | ".join(f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS), flush=True)

    result = {"n": len(photos), "nima": nima.name, "nima_before": statistics.fmean(nima_before),
              "brisque_before": statistics.fmean(brisque_scores(originals)), "brisque": BRISQUE_NAME,
              "eps_255": appeal.eps * 255, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"original: NIMA {result['nima_before']:.3f}, BRISQUE {result['brisque_before']:.2f}")
    print("| method | top-1 fooled | top-5 fooled | NIMA | NIMA change | BRISQUE | PSNR dB | SSIM | s/img |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['top1_fooled']:.1%} | {r['top5_fooled']:.1%} | {r['nima']:.3f} | "
              f"{r['nima_change']:+.3f} | {r['brisque']:.2f} | {r['psnr_db']:.2f} | {r['ssim']:.3f} | "
              f"{r['s_per_image']:.3f} |")
    shown = {name: pixels[: args.gallery_photos] for name, pixels in files.items() if name != "JPEG control"}
    gallery(shown, args.gallery, args.gallery_photos)
    print(f"gallery: {args.gallery}")


if __name__ == "__main__":
    main()
