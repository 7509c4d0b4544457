"""`protector data fetch|check`: download the official files, or say which are missing."""

from __future__ import annotations

import argparse
import sys

from protector.data.fetch import (
    ChecksumError,
    DownloadError,
    FileStatus,
    check,
    fetch,
    offline_help,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    # Read at call time, so a patched table (tests, mirrors) is what --only offers.
    from protector.data.fetch import OFFICIAL_FILES

    parser = subparsers.add_parser(
        "data",
        help="download and check the official files of the task",
        description="Download (fetch) or verify (check) the Places365 images, labels, MEPP lists "
        "and the attack model.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    fetch_parser = actions.add_parser("fetch", help="download what is missing, resume, verify checksums")
    _common(fetch_parser)
    fetch_parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(OFFICIAL_FILES),
        help=f"fetch only these files (from: {', '.join(OFFICIAL_FILES)})",
    )
    fetch_parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    fetch_parser.add_argument(
        "--keep-mismatched", action="store_true",
        help="use present files whose size or checksum differs from the official one instead of "
        "downloading them again (offline or re-packed copies; each is listed as 'kept')",
    )
    fetch_parser.set_defaults(func=_run_fetch)

    check_parser = actions.add_parser("check", help="list present, missing and corrupt files (exit 1 if any is not ok)")
    _common(check_parser)
    check_parser.set_defaults(func=_run_check)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", required=True, help="data folder (val_256.tar, places365_val.txt, the MEPP lists)")
    parser.add_argument(
        "--weights", default="weights", help="folder for the attack model checkpoint (default: weights)"
    )


def format_table(statuses: list[FileStatus]) -> str:
    """A plain-text table: file, state, detail, path."""
    rows = [("FILE", "STATE", "DETAIL", "PATH")]
    rows += [(s.name, s.state, s.detail, str(s.path)) for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths)) + "  " + row[3] for row in rows
    )


def _run_check(args: argparse.Namespace) -> int:
    statuses = check(args.root, weights_dir=args.weights)
    print(format_table(statuses))
    bad = [s for s in statuses if not s.ok]
    if not bad:
        print(f"\nall {len(statuses)} files present")
        return 0
    print(f"\n{len(bad)} of {len(statuses)} files missing or bad. "
          f"Run `protector data fetch --root {args.root} --weights {args.weights}`, or by hand:\n")
    print(offline_help(statuses))
    return 1


def _run_fetch(args: argparse.Namespace) -> int:
    try:
        results = fetch(
            args.root, names=args.only, weights_dir=args.weights, progress=not args.no_progress,
            keep_mismatched=args.keep_mismatched,
        )
    except (ChecksumError, DownloadError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.name:34} {result.action:10} {result.path}")
    kept = [r for r in results if r.action == "kept"]
    if kept:
        print(f"\nwarning: {len(kept)} file(s) kept although they differ from the official ones "
              "(--keep-mismatched); numbers measured on them are not the task's:", file=sys.stderr)
        for result in kept:
            print(f"  {result.name}: {result.detail}", file=sys.stderr)
    return 0
