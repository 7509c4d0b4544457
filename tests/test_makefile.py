"""`make run` as `make -n` prints it: every step reads the same data, attack model and run folder."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(*variables: str) -> list[list[str]]:
    # -o: the install stamp counts as done, so only the run recipe is printed. Under `make test`
    # the outer make's MAKEFLAGS/MAKELEVEL would add "Entering directory" lines: not inherited.
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    output = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "run", *variables],
        cwd=REPO, capture_output=True, text=True, check=True, env=env,
    ).stdout
    lines = output.replace("\\\n", " ").splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.startswith("echo ")]


def recipe_note(*variables: str) -> str:
    """The line `make run` prints first: which training recipe it runs and roughly how long."""
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    output = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", "run", *variables],
        cwd=REPO, capture_output=True, text=True, check=True, env=env,
    ).stdout
    return next(line for line in output.splitlines() if line.startswith("echo "))


def option_values(command: list[str]) -> list[str]:
    return [value for flag, value in zip(command, command[1:]) if flag.startswith("--")]


def test_every_step_of_make_run_uses_data_and_attack_model(tmp_path) -> None:
    data, model = "/elsewhere/mepp", "/models/places/resnet50_places365.pth.tar"
    commands = dry_run(f"DATA={data}", f"ATTACK_MODEL={model}", "RUN=runs/try1")
    fetch, train, protect, evaluate = commands
    assert "fetch" in fetch and "train.py" in train and "infer.py" in protect and "evaluate" in evaluate
    for command in commands:
        for value in option_values(command):
            if "/" in value and not value.startswith(("runs/try1", "configs/")):
                # Every file a step reads is under DATA or is the attack model; none is a default path.
                assert value.startswith((data, "/models/places")), (value, command)
    train_options = dict(zip(train, train[1:]))
    assert train_options["--data.images"] == f"{data}/val_256.tar" == dict(zip(protect, protect[1:]))["--images"]
    assert train_options["--data.train_list"] == f"{data}/MEPP18val.csv"
    assert train_options["--model.classifier.init_args.checkpoint"] == model
    assert dict(zip(evaluate, evaluate[1:]))["--classifier-checkpoint"] == model
    assert dict(zip(fetch, fetch[1:]))["--weights"] == "/models/places/"


def test_opt_ins_reach_their_steps(tmp_path) -> None:
    nima = tmp_path / "nima.hdf5"
    fetch, _, protect, evaluate = dry_run(f"NIMA={nima}")
    assert "--keep-mismatched" not in fetch and "--nima" not in evaluate + protect  # no NIMA file there yet
    nima.write_bytes(b"weights")
    assert "--overwrite" not in dry_run()[2]
    fetch, _, protect, evaluate = dry_run(f"NIMA={nima}", "KEEP_MISMATCHED=1", "OVERWRITE=1")
    assert "--keep-mismatched" in fetch and "--overwrite" in protect
    assert dict(zip(evaluate, evaluate[1:]))["--nima"] == str(nima)
    assert dict(zip(protect, protect[1:]))["--nima"] == str(nima)  # the manifest's before/after


def test_appeal_variant_trains_with_the_overlay_and_reports_the_split(tmp_path) -> None:
    nima = tmp_path / "nima.hdf5"
    _, train, _, evaluate = dry_run("RUN=runs/try1")
    assert "configs/overlays/appeal.yaml" not in train
    assert dict(zip(evaluate, evaluate[1:]))["--protector"] == "runs/try1/protector.pt"  # a no-op without an edit
    _, train, _, _ = dry_run("APPEAL=1", f"NIMA={nima}")
    assert train[train.index("configs/mepp19.yaml") + 1 : train.index("configs/mepp19.yaml") + 5] == [
        "--config", "configs/overlays/appeal.yaml", "--model.appeal.init_args.weights", str(nima)]


def test_without_a_gpu_make_run_trains_the_cpu_recipe_and_says_so() -> None:
    _, train, _, _ = dry_run("GPU=0")
    assert train[train.index("configs/mepp19.yaml") + 1 : train.index("configs/mepp19.yaml") + 3] == [
        "--config", "configs/overlays/cpu.yaml"]
    note = recipe_note("GPU=0")
    assert "no GPU found: CPU recipe" in note and "h" in note
    _, train, _, _ = dry_run("GPU=1")
    assert "configs/overlays/cpu.yaml" not in train
    assert "GPU recipe" in recipe_note("GPU=1")
    # Appeal: the CPU overlay comes after the appeal overlay (its trainer settings win).
    _, train, _, _ = dry_run("GPU=0", "APPEAL=1")
    assert train.index("configs/overlays/appeal.yaml") < train.index("configs/overlays/cpu.yaml")


def test_trainer_args_reach_training_last() -> None:
    _, train, _, _ = dry_run("TRAINER_ARGS=--trainer.devices 4 --trainer.strategy ddp --ckpt_path last")
    assert train[-6:] == ["--trainer.devices", "4", "--trainer.strategy", "ddp", "--ckpt_path", "last"]
