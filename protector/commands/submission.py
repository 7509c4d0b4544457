"""`protector submission check CODE.zip --list MEPP19test.csv`: the zip as the organizers receive it."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submission", help="check a submission zip",
        description="Check a run's submission zip as the task organizers receive it.",
    )
    actions = parser.add_subparsers(dest="submission_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check", help="names, count, format, size and metadata of every file in CODE.zip",
        description="Check CODE.zip against the test list: one CODE_<photo>.jpg per listed photo at the top "
        "of the zip and nothing else, each a readable JPEG of its original's size (256x256 unless --images "
        "gives the originals) without EXIF/GPS, XMP, IPTC or comments. Exit 0 when it is ready to submit, "
        "1 when not, 2 for bad arguments.",
    )
    check.add_argument("zip", help="the run's zip, CODE.zip (its name is the run code)")
    check.add_argument("--list", required=True, help="the test list, e.g. data/MEPP19test.csv")
    check.add_argument("--images", help="the originals (folder or val_256.tar) to compare sizes with")
    check.set_defaults(func=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from protector.data.sources import open_source
    from protector.submission_check import check_submission

    try:
        originals = open_source(args.images) if args.images else None
        report = check_submission(args.zip, args.list, originals)
    except (FileNotFoundError, ValueError) as err:  # ListFormatError, SourceError, too large, not a file
        print(f"protector submission check: error: {err}", file=sys.stderr)
        return 2
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"problem: {problem}")
    verdict = "ready to submit" if report.ok else f"NOT ready: {len(report.problems)} problem(s)"
    print(f"{report.zip_path}: run code {report.run_code}, {report.checked} of {report.expected} test photos "
          f"checked; {verdict}")
    return 0 if report.ok else 1
