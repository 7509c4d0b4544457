"""Flags more than one command shares: the attack model, and old spellings kept as aliases.

`protect`, `evaluate` and `accuracy` all attack or measure one classifier; they add its flags
here, so each is spelled, typed and explained once, and :func:`attack_model_spec` turns them
into one :class:`~protector.classifier_spec.AttackModelSpec`. An old spelling still works
(:func:`deprecated_alias`): it is hidden from ``--help`` and prints a one-line note.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protector.classifier_spec import AttackModelSpec

# What no --classifier means in `protect` and `evaluate` (`accuracy` asks for one).
DEFAULT_ATTACK_MODEL = ("the scene classifier the protection works against and the reports measure.\n"
                        "Without --classifier: the task's ResNet50-places365 from the user cache,\n"
                        "downloaded on first use.")


class DeprecatedAlias(argparse.Action):
    """Stores like the flag it stands for, after a one-line note on stderr naming the new spelling."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated, use {self.new} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def deprecated_alias(group: argparse._ActionsContainer, old: str, new: argparse.Action) -> argparse.Action:
    """Accept `old` for the value-taking flag `new`: same destination, type and metavar, not in --help."""
    return group.add_argument(old, action=DeprecatedAlias, new=new.option_strings[0], dest=new.dest, type=new.type,
                              metavar=new.metavar, help=argparse.SUPPRESS)


def add_attack_model_arguments(parser: argparse.ArgumentParser, old_spellings: Sequence[tuple[str, str]] = (),
                               description: str = DEFAULT_ATTACK_MODEL) -> argparse._ArgumentGroup:
    """Add the "attack model" group: --classifier, --classifier-checkpoint, --sha256, --allow-unpinned,
    --classifier-path; `old_spellings` are this command's (old, new) aliases. Returns the group, for
    a command's own flags about the model."""
    group = parser.add_argument_group("attack model", description)
    flags = {
        "--classifier": group.add_argument(
            "--classifier", metavar="SPEC",
            help="resnet50, resnet18, densenet161, wideresnet18 (each with --classifier-checkpoint), standin "
                 "(../shared/standin), or module.Class (with --classifier-path)"),
        "--classifier-checkpoint": group.add_argument(
            "--classifier-checkpoint", type=Path, metavar="FILE",
            help="the architecture's official checkpoint, e.g. weights/resnet50_places365.pth.tar"),
        "--sha256": group.add_argument(
            "--sha256", dest="classifier_sha256", metavar="HEX", help="expected sha256 of --classifier-checkpoint"),
        "--allow-unpinned": group.add_argument(
            "--allow-unpinned", action="store_true", help="accept a classifier checkpoint with no sha256 to check"),
        "--classifier-path": group.add_argument(
            "--classifier-path", type=Path, metavar="DIR",
            help="folder put on sys.path for a module.Class spec (default for standin: ../shared/standin)"),
    }
    for old, new in old_spellings:
        deprecated_alias(group, old, flags[new])
    return group


def attack_model_spec(args: argparse.Namespace) -> AttackModelSpec:
    """The :class:`~protector.classifier_spec.AttackModelSpec` the attack-model flags give.

    Raises:
        ValueError: --classifier-checkpoint without --classifier.
    """
    from protector.classifier_spec import AttackModelSpec  # torch: only once a command runs

    return AttackModelSpec(args.classifier, args.classifier_checkpoint, args.classifier_sha256,
                           args.allow_unpinned, args.classifier_path)
