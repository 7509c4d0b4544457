"""The `protector` command. Each subcommand lives in `protector/commands/<name>.py`.

A subcommand module provides `register(subparsers)`, which adds its parser and sets
`func` (a callable taking the parsed namespace and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Only the chosen subcommand's module is imported: `protector data check` should not
# pay for importing Lightning, and one broken optional dependency does not take every
# subcommand down.
SUBCOMMANDS = {
    "data": "download and check the task's data and weights",
    "accuracy": "clean top-1/top-5 of a Places365 classifier on a labelled list",
    "train": "train the generator (LightningCLI: fit, validate, ...)",
    "protect": "protect photos in one forward pass and write the files",
    "evaluate": "measure protected files as the organizers do; JSON, Markdown and HTML report",
    "submission": "check a submission zip as the organizers receive it",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protector",
        description="Protect photos against automatic scene recognition (MediaEval Pixel Privacy).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in SUBCOMMANDS.items():
        if name == command:
            importlib.import_module(f"protector.commands.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `train` hands everything after it to LightningCLI untouched.
    if argv[:1] == ["train"]:
        from protector.commands.train import run_lightning_cli

        return run_lightning_cli(argv[1:])
    command = argv[0] if argv and argv[0] in SUBCOMMANDS else None
    args = build_parser(command).parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
