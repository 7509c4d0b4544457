"""`protector evaluate`: score protected files from disk, write results.json, summary.md, report.html."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protector.commands.argtypes import budget, non_negative_int, positive_int, quality, seed
from protector.commands.flags import add_attack_model_arguments, attack_model_spec

DESCRIPTION = """\
Evaluate protected files as the task organizers did: decode each file from disk, classify it
at full size (normalization only), compare with its original. Writes results.json, summary.md,
report.html (with plots and a gallery) into --out.
"""


def _baselines(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    files = parser.add_argument_group("files")
    files.add_argument("--protected", type=Path, required=True, metavar="DIR|ZIP",
                       help="the run's output folder, or the submission zip (scored from its members)")
    files.add_argument("--run-code", metavar="CODE", help="the CODE_ prefix of the protected file names, if any")
    files.add_argument("--original", type=Path, required=True, metavar="DIR_OR_TAR_OR_LIST",
                       help="the originals: a folder, val_256.tar, or a list file (names relative to its folder)")
    files.add_argument("--list", dest="list_path", type=Path, metavar="FILE",
                       help="evaluate exactly these originals (e.g. MEPP19test.csv); missing files are errors")
    files.add_argument("--labels", type=Path, metavar="FILE",
                       help="ground truth (places365_val.txt or a list with labels); "
                            "without it accuracy is measured against the clean prediction")
    files.add_argument("--allow-missing", action="store_true",
                       help="evaluate the files that are there when some are missing or unreadable")
    files.add_argument("--out", type=Path, required=True, metavar="REPORT_DIR", help="folder for the report")

    add_attack_model_arguments(parser, [("--checkpoint", "--classifier-checkpoint")])
    models = parser.add_argument_group("other models and class lists")
    models.add_argument("--transfer", nargs="+", action="extend", default=[], metavar="SPEC[=CHECKPOINT]",
                        help="more models to test transfer on, e.g. resnet18=weights/resnet18_places365.pth.tar "
                             "standin (--allow-unpinned and --classifier-path apply to them too)")
    models.add_argument("--nima", type=Path, metavar="WEIGHTS",
                        help="NIMA weights (weights_mobilenet_aesthetic_0.07.hdf5); without it appeal is not measured")
    models.add_argument("--nima-preprocess", choices=("idealo", "native"), default="idealo",
                        help="idealo: resize to 224 (nearest); native: full size (as the organizers). Default: idealo")
    models.add_argument("--protector", type=Path, metavar="PROTECTOR_PT",
                        help="the protector.pt that made the files: for an appeal protector (with an enhancer) the "
                             "edit alone is recomputed from each original and the NIMA change split into the edit's "
                             "and the perturbation's; the report shows original | enhanced | protected")
    models.add_argument("--categories", type=Path, metavar="FILE", help="categories_places365.txt, for class names")
    models.add_argument("--senscats", type=Path, metavar="FILE",
                        help="MEPP18senscats.txt: the per-category table covers these classes, and the report "
                             "says how often a protected photo still lands in one of them (privacy leakage)")
    models.add_argument("--criteria", type=Path, metavar="FILE",
                        help="privacy criteria of the --senscats categories (category,index,criteria lines). "
                             "Default: the project's mapping, protector/data/privacy_criteria.csv")

    base = parser.add_argument_group("baselines")
    base.add_argument("--baselines", type=_baselines, default=[], metavar="fgsm,pgd,eot-pgd",
                      help="also run FGSM and/or PGD-10 (torchattacks, no JPEG in their loss) and/or EOT-PGD-10 "
                           "(through a differentiable JPEG at --quality: the strongest of the three) at --eps on the "
                           "same photos, saved like the protected files, and evaluate them side by side")
    base.add_argument("--eps", type=budget, metavar="E", help="baseline budget, a fraction of the pixel range: 2/255 or 0.00784")
    base.add_argument("--quality", type=quality,
                      help="JPEG quality the baselines (and the --views control) are saved with. Default: the quality "
                           "protect-run.json records for the protected files, else 90")
    base.add_argument("--views", nargs="*", metavar="VIEW",
                      help="also report top-1/top-5 changed under each view a classifier may see the files through "
                           "(alone: the default set of protector.views: as-is, shorter side 512/384/256/224, 256 "
                           "with a centre crop of 224, two platform uploads seen at 256), with the originals "
                           "re-saved as JPEG as the control")
    base.add_argument("--seed", type=seed, default=0, help="seed of PGD's random start. Default: 0")

    run = parser.add_argument_group("running")
    run.add_argument("--gallery", type=non_negative_int, default=8, help="examples in the report's gallery. Default: 8")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1. Default: auto")
    run.add_argument("--batch-size", type=positive_int, default=16, help="photos per model call. Default: 16")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate protected files like the task organizers", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from protector.evaluation.report import write_report
    from protector.evaluation.run import EvaluateOptions, evaluate

    from protector.evaluation.zip_input import protected_folder, submission_run_code
    from protector.outputs import OutputError, replace_together, write_failures

    values = {key: value for key, value in vars(args).items() if key in EvaluateOptions.__dataclass_fields__}
    if values.get("run_code") is None:  # `evaluate --protected TEAM_RUN.zip` needs no --run-code
        values["run_code"] = submission_run_code(Path(args.protected))
    try:
        # A submission zip is scored from its members; the report names the zip.
        with protected_folder(Path(args.protected)) as folder:
            options = EvaluateOptions(**{**values, "protected": folder}, attack_model=attack_model_spec(args))
            evaluation = evaluate(options)
            evaluation.settings["protected"] = str(args.protected)
            try:
                with write_failures(f"the report in {options.out}"):
                    # All of results.json, summary.md, report.html, plots/ and gallery/, or none of them.
                    paths = replace_together(options.out, lambda stage: write_report(evaluation, stage))
            except OutputError as err:
                print(f"protector evaluate: error: {err}", file=sys.stderr)
                return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"protector evaluate: error: {err}", file=sys.stderr)
        return 2
    print(paths["summary"].read_text(encoding="utf-8"))
    print(f"report: {paths['html']}")
    return 0
