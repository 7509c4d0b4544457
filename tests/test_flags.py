"""One spelling per flag: the attack model's flags are the same in protect, evaluate and accuracy.

Parsing only: nothing is built or run (see test_accuracy_cli.py, test_evaluate.py and
test_protect.py for the commands themselves).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from protector.classifier_spec import AttackModelSpec
from protector.cli import build_parser, main
from protector.commands.flags import attack_model_spec

# What each command needs besides the attack model to parse.
REQUIRED = {
    "protect": [],
    "evaluate": ["--protected", "p", "--original", "o", "--out", "r"],
    "accuracy": ["--list", "l.csv", "--images", "i"],
}
ATTACK_FLAGS = ["--classifier", "resnet50", "--classifier-checkpoint", "w/resnet50_places365.pth.tar",
                "--sha256", "ab" * 32, "--allow-unpinned", "--classifier-path", "models"]


def parse(command: str, *flags: str):
    return build_parser(command).parse_args([command, *flags, *REQUIRED[command]])


@pytest.mark.parametrize("command", list(REQUIRED))
def test_the_attack_model_flags_parse_the_same_in_every_command(command):
    assert attack_model_spec(parse(command, *ATTACK_FLAGS)) == AttackModelSpec(
        "resnet50", Path("w/resnet50_places365.pth.tar"), "ab" * 32, True, Path("models"))
    assert attack_model_spec(parse(command)) == AttackModelSpec()  # the cached official model


@pytest.mark.parametrize("command, old, new, value", [
    ("protect", "--checkpoint", "protector", "run/protector.pt"),
    ("evaluate", "--checkpoint", "classifier_checkpoint", "w.pth.tar"),
    ("accuracy", "--checkpoint", "classifier_checkpoint", "w.pth.tar"),
    ("accuracy", "--model", "classifier", "standin"),
    ("accuracy", "--search-path", "classifier_path", "models"),
])
def test_an_old_spelling_still_works_with_a_note(capsys, command, old, new, value):
    args = parse(command, old, value)
    expected = value if new == "classifier" else Path(value)
    assert getattr(args, new) == expected
    err = capsys.readouterr().err
    new_flag = "--" + new.replace("_", "-")
    assert err == f"protector {command}: note: {old} is deprecated, use {new_flag} (same meaning)\n"
    parse(command, new_flag, value)
    assert capsys.readouterr().err == ""  # the new spelling says nothing


def test_protect_help_shows_five_groups_and_no_old_spelling(capsys):
    with pytest.raises(SystemExit):
        main(["protect", "--help"])
    help_text = capsys.readouterr().out
    groups = ["input and output:", "protection:", "attack model:", "appeal (", "runtime ("]
    positions = [help_text.index(f"\n{group}") for group in groups]
    assert positions == sorted(positions)
    attack = help_text[positions[2]:positions[3]]
    for flag in ("--classifier ", "--classifier-checkpoint", "--sha256", "--allow-unpinned", "--classifier-path"):
        assert flag in attack
    assert "--protector FILE" in help_text[positions[1]:positions[2]]
    assert "--checkpoint" not in help_text


@pytest.mark.parametrize("command", ["protect", "evaluate"])
def test_a_classifier_checkpoint_needs_a_classifier_everywhere(command):
    with pytest.raises(ValueError, match="--classifier-checkpoint needs --classifier"):
        attack_model_spec(parse(command, "--classifier-checkpoint", "w.pth.tar"))


def test_accuracy_still_needs_a_classifier(capsys):
    assert main(["accuracy", *REQUIRED["accuracy"]]) == 2
    assert "--classifier is required" in capsys.readouterr().err
