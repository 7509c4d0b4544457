"""The `protector` command. Each subcommand lives in `protector/commands/<name>.py`.

A subcommand module provides `register(subparsers)`, which adds its parser and sets
`func` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Imported lazily so `protector --help` stays fast and one broken optional
# dependency does not take every subcommand down.
SUBCOMMANDS = ("data", "accuracy", "train", "protect", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protector",
        description="Protect photos against automatic scene recognition (MediaEval Pixel Privacy).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"protector.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `train` hands everything after it to LightningCLI untouched.
    if argv[:1] == ["train"]:
        from protector.commands.train import run_lightning_cli

        return run_lightning_cli(argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
