"""Privacy leakage on the stand-in: does the protected photo still land in a sensitive category?

The evaluation set: the held-out split of `configs/standin.yaml` (as `bench/protection_table.py`),
restricted to photos whose clean prediction survives re-encoding the clean photo as JPEG
(../shared/standin/README.md) and is one of the 60 sensitive categories (`--senscats`; the
stand-in has Places365 class indices). `--min-confidence` defaults to 0 here, not 0.3 as in
the protection table: at 0.3 only 16 held-out photos are predicted sensitive, too few to
measure a rate to a few percent; the rows for that confident subset are reported beside.

Every method is `evaluate`'s EOT-PGD baseline with K steps from the clean photo
(`protector.evaluation.baselines`, which runs `protector.refine.refine`: sign steps of
2.5 eps / K through a differentiable JPEG at the output quality) with a different loss:
today's default (the top-5 margin of the clean prediction, kappa 2) and `SensitiveSafe`
(the probability mass of the label and of every sensitive class below the k-th best other
class; `scope="criteria"`: only the sensitive classes sharing a privacy criterion with the
label). Each output is written as JPEG, read back from disk and classified by the stand-in.

Per method: photos, non-sensitive top-1, no sensitive category in the top-5, top-1 still in
a criterion of the clean prediction, top-1 / top-5 fooled (against the clean prediction),
PSNR of the saved file against the original, median seconds per photo.

    python bench/sensitive_leakage.py --out bench/out/sensitive_leakage.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from protection_table import (  # bench/protection_table.py
    CPU,
    Method,
    decode,
    held_out_split,
    measure,
    select_eval_set,
)

from protector.classifier_spec import build_classifier
from protector.classifiers import FrozenClassifier
from protector.data.criteria import CRITERIA, criteria_of_senscats, read_privacy_criteria
from protector.data.lists import read_senscats
from protector.evaluation.baselines import baseline_attack, baseline_spec
from protector.evaluation.leakage import leakage_summary
from protector.evaluation.scoring import top_k
from protector.losses import SensitiveSafe, TopKMargin

REPO = Path(__file__).resolve().parents[1]


def methods(classifier, senscats: Path, eps: float, steps: int, quality: int, kappa: float) -> list[tuple[Method, str]]:
    """(method, loss description) pairs: today's default loss first, then SensitiveSafe variants."""
    losses = [
        ("default", "TopKMargin(k=5, kappa=2), today's default", TopKMargin(k=5, kappa=2.0)),
        ("safe-k1", f"SensitiveSafe(k=1, kappa={kappa:g})", SensitiveSafe(str(senscats), k=1, kappa=kappa)),
        ("safe-k5", f"SensitiveSafe(k=5, kappa={kappa:g})", SensitiveSafe(str(senscats), k=5, kappa=kappa)),
        ("safe-k5-criteria", f"SensitiveSafe(k=5, kappa={kappa:g}, scope=criteria)",
         SensitiveSafe(str(senscats), k=5, kappa=kappa, scope="criteria")),
    ]
    spec = baseline_spec("eot-pgd", eps, steps=steps)  # `evaluate --baselines eot-pgd`, another loss
    return [(Method(f"EOT-PGD-{steps} {name}", name, eps, baseline_attack(spec, classifier, CPU, quality, loss),
                    str(steps)), description) for name, description, loss in losses]


def protected_tops(classifier, saved: list) -> list[list[int]]:
    return [[c for c, _ in top] for top in top_k(classifier, saved, CPU, k=5, batch_size=1)]


def leakage_row(method: Method, description: str, measured: dict, leak: dict) -> dict:
    sensitive = leak["sensitive"]
    return {
        "method": method.name, "loss": description, "n": sensitive["n"],
        "non_sensitive_top1": 1 - sensitive["top1_sensitive"],
        "no_sensitive_top5": 1 - sensitive["topk_sensitive"],
        "same_criterion_top1": sensitive["same_criterion_top1"],
        "top1_fooled": measured["top1_fooled"], "top5_fooled": measured["top5_fooled"],
        "psnr_db": measured["psnr_db"], "s_per_image": measured["s_per_image"],
        "per_criterion": leak["per_criterion"],
    }


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(rows: list[dict]) -> str:
    lines = ["| method (EOT-PGD loss) | photos | non-sensitive top-1 | no sensitive in top-5 | top-1 same criterion "
             "as clean | top-1 fooled | top-5 fooled | PSNR dB | s/img |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['n']} | {r['non_sensitive_top1']:.1%} | {r['no_sensitive_top5']:.1%} "
                     f"| {r['same_criterion_top1']:.1%} | {r['top1_fooled']:.1%} | {r['top5_fooled']:.1%} "
                     f"| {_num(r['psnr_db'])} | {_num(r['s_per_image'])} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs/standin.yaml")
    parser.add_argument("--senscats", type=Path, default=REPO.parent / "shared/data/mepp/MEPP18senscats.txt")
    parser.add_argument("--eps-255", type=float, default=2.0)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kappa", type=float, default=2.0, help="SensitiveSafe's margin (logits). Default: 2")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--min-confidence", type=float, default=0.0)
    parser.add_argument("--confident", type=float, default=0.3, help="also report photos at least this confident")
    parser.add_argument("--limit", type=int, default=None, help="first N held-out photos only (a quick check)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/sensitive_leakage.json")
    args = parser.parse_args()

    senscats = read_senscats(args.senscats)
    criteria = criteria_of_senscats(senscats, read_privacy_criteria())
    classifier = FrozenClassifier(build_classifier("standin"))
    datamodule = held_out_split(args.config)
    held_out = decode(datamodule, datamodule.val_entries[: args.limit])
    stable = select_eval_set(classifier, held_out, args.quality, args.min_confidence)
    photos = [p for p in stable if p[2] in senscats]
    confidence = [top[0][1] for top in top_k(classifier, [p for _, p, _ in photos], CPU, k=1, batch_size=1)]
    confident = [i for i, c in enumerate(confidence) if c >= args.confident]
    print(f"evaluation set: {len(photos)} of {len(held_out)} held-out photos (JPEG-stable, clean prediction "
          f"sensitive); {len(confident)} with confidence >= {args.confident}", flush=True)

    out_dir = args.out.parent / "sensitive_leakage_files"
    rows, confident_rows = [], []
    for method, description in methods(classifier, args.senscats, args.eps_255 / 255, args.steps, args.quality,
                                       args.kappa):
        measured, saved = measure(method, classifier, photos, args.quality, out_dir)
        tops = protected_tops(classifier, saved)
        pairs = [(label, top) for (_, _, label), top in zip(photos, tops)]
        rows.append(leakage_row(method, description, measured,
                                leakage_summary(pairs, senscats, criteria, list(CRITERIA))))
        subset = [pairs[i] for i in confident]
        sub_measured = {"top1_fooled": statistics.fmean(top[0] != label for label, top in subset),
                        "top5_fooled": statistics.fmean(label not in top for label, top in subset),
                        "psnr_db": None, "s_per_image": None}
        confident_rows.append(leakage_row(method, description, sub_measured,
                                          leakage_summary(subset, senscats, criteria, list(CRITERIA))))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_criterion"}), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"eps_255": args.eps_255, "steps": args.steps, "quality": args.quality,
                                    "n_held_out": len(held_out), "n_eval": len(photos), "rows": rows,
                                    "confident": {"min_confidence": args.confident, "rows": confident_rows}},
                                   indent=2))
    print(f"\n{len(photos)} photos, {args.eps_255:g}/255, JPEG q{args.quality} on disk\n")
    print(markdown(rows))
    print(f"\nthe {len(confident)} photos with confidence >= {args.confident} (PSNR and time: see above)\n")
    print(markdown(confident_rows))
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
