"""Time `make run`'s CPU recipe on this machine, step by step, on an official-format data root.

The real photos are not here, so the data root is built from the stand-in's 256x256 photos
(``../shared/standin/images``) under the official names (``val_256/Places365_val_*.jpg`` in a
tar, MEPP-style lists) and the attack model is a random ResNet50 saved like the official file:
the work per photo is the real one (ResNet50 at 256 px), only the numbers fooled are not.
Each step runs a slice of the real command and the rate is extrapolated to the task's sizes
(MEPP18val: 2,700 training and 300 validation photos; MEPP19test: 600 photos).

    PYTHONPATH=$PWD python bench/cpu_recipe.py ../shared WORKDIR [TRAIN_STEPS]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch
import torchvision
import yaml

REPO = Path(__file__).resolve().parents[1]
TRAIN_PHOTOS, VAL_PHOTOS, TEST_PHOTOS = 2700, 300, 600
TRAIN_LIST, VAL_COUNT, TEST_COUNT = 240, 24, 16


def build_root(shared: Path, work: Path, count: int) -> tuple[Path, Path]:
    """An official-format data root of `count` stand-in photos and a random official-layout ResNet50."""
    data = work / "data"
    data.mkdir(parents=True, exist_ok=True)
    photos = sorted((shared / "standin" / "images").glob("*.jpg"))[:count]
    names = [f"Places365_val_{i + 1:08d}.jpg" for i in range(len(photos))]
    with tarfile.open(data / "val_256.tar", "w") as archive:
        for photo, name in zip(photos, names):
            archive.add(photo, arcname=f"val_256/{name}")
    (data / "places365_val.txt").write_text("".join(f"{n} {i % 4}\n" for i, n in enumerate(names)))
    train = names[:TRAIN_LIST]  # 4 labels of 60: validation takes 10% of each (24 photos)
    (data / "MEPP18val.csv").write_text("".join(f'"{n}","{i % 4}"\n' for i, n in enumerate(train)))
    (data / "MEPP19test.csv").write_text("".join(f"{n}\n" for n in names[TRAIN_LIST:]))
    (data / "MEPP18senscats.txt").write_bytes((shared / "data" / "mepp" / "MEPP18senscats.txt").read_bytes())
    (data / "categories_places365.txt").write_bytes((shared / "standin" / "categories_places365.txt").read_bytes())
    weights = work / "weights" / "resnet50_places365.pth.tar"
    weights.parent.mkdir(exist_ok=True)
    torch.manual_seed(0)
    save_official(torchvision.models.resnet50(num_classes=365).eval(), weights, "resnet50")
    return data, weights


def save_official(model: torch.nn.Module, path: Path, arch: str) -> None:
    """Save like CSAIL did (as tests/test_classifiers.py does): DataParallel `module.` keys in an
    epoch/arch/state_dict/best_prec1 dict, in the pre-1.6 pickle stream format."""
    state = {"module." + key: value for key, value in model.state_dict().items()}
    checkpoint = {"epoch": 90, "arch": arch, "state_dict": state, "best_prec1": 54.7}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=False)


def timed(command: list[str], log: Path) -> tuple[float, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    output = result.stdout + result.stderr
    log.write_text(output)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return seconds, output


def main(shared: Path, work: Path, train_steps: int = 20) -> None:
    overlay = yaml.safe_load((REPO / "configs" / "overlays" / "cpu.yaml").read_text())
    batch = overlay["data"]["batch_size"]
    count = TRAIN_LIST + TEST_COUNT
    data, weights = build_root(shared, work, count)
    run = work / "run"
    py = sys.executable
    train = [py, "train.py", "fit", "--config", "configs/mepp19.yaml", "--config", "configs/overlays/cpu.yaml",
             "--trainer.default_root_dir", str(run), "--trainer.logger=false",
             "--data.images", str(data / "val_256.tar"), "--data.train_list", str(data / "MEPP18val.csv"),
             "--data.labels_file", str(data / "places365_val.txt"),
             "--model.sensitive_categories", str(data / "MEPP18senscats.txt"),
             "--classifier-checkpoint", str(weights), "--allow-unpinned",
             "--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(train_steps),
             "--trainer.num_sanity_val_steps", "0",
             "--progress.enabled", "true", "--progress.every_n_seconds", "1"]
    seconds, output = timed(train, work / "train.log")
    rates = [float(r) for r in re.findall(r"([\d.]+) s/step", output)]
    step_s = rates[-1]
    amount, unit = re.findall(r"validation: done in (\d+) (s|min)", output)[-1]
    val_s = float(amount) * (60 if unit == "min" else 1)
    val_count = VAL_COUNT
    steps_per_epoch = TRAIN_PHOTOS // batch + (TRAIN_PHOTOS % batch > 0)
    epochs = overlay["trainer"]["max_epochs"]
    train_total = epochs * steps_per_epoch * step_s
    val_total = epochs * VAL_PHOTOS * val_s / val_count
    print(f"train: {step_s:.2f} s/step (batch {batch}, 128 px) -> {epochs} x {steps_per_epoch} steps = "
          f"{train_total / 60:.0f} min (max_time caps it)")
    print(f"validation: {val_s:.1f} s for ~{val_count} photos -> {epochs} x {VAL_PHOTOS} photos = {val_total / 60:.0f} min")
    protect = [py, "infer.py", "--protector", str(run / "protector.pt"), "--list", str(data / "MEPP19test.csv"),
               "--images", str(data / "val_256.tar"), "--output", str(work / "submission"), "--format", "jpeg",
               "--quality", "90", "--run-code", "myteam_unet", "--zip", "--refine-steps", "2",
               "--refine-loss", "sensitive_safe", "--senscats", str(data / "MEPP18senscats.txt"),
               "--classifier", "resnet50", "--classifier-checkpoint", str(weights), "--allow-unpinned",
               "--categories", str(data / "categories_places365.txt"), "--overwrite"]
    protect_s, _ = timed(protect, work / "protect.log")
    test_count = TEST_COUNT
    print(f"protect: {protect_s:.0f} s for {test_count} photos (whole command) -> {TEST_PHOTOS} photos = "
          f"{protect_s / test_count * TEST_PHOTOS / 60:.0f} min")
    evaluate = [py, "-m", "protector", "evaluate", "--protected", str(work / "submission"), "--run-code",
                "myteam_unet", "--list", str(data / "MEPP19test.csv"), "--original", str(data / "val_256.tar"),
                "--labels", str(data / "places365_val.txt"), "--categories", str(data / "categories_places365.txt"),
                "--senscats", str(data / "MEPP18senscats.txt"), "--classifier", "resnet50",
                "--classifier-checkpoint", str(weights), "--allow-unpinned", "--out", str(work / "report")]
    evaluate_s, _ = timed(evaluate, work / "evaluate.log")
    print(f"evaluate: {evaluate_s:.0f} s for {test_count} photos (whole command) -> {TEST_PHOTOS} photos = "
          f"{evaluate_s / test_count * TEST_PHOTOS / 60:.0f} min")
    total = min(train_total, 90 * 60) + val_total + (protect_s + evaluate_s) / test_count * TEST_PHOTOS
    print(f"make run, CPU recipe, estimated: {total / 3600:.1f} h")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shared", type=Path, help="the shared data folder (../shared)")
    parser.add_argument("work", type=Path, help="a scratch folder for the data root, the run and the logs")
    parser.add_argument("train_steps", type=int, nargs="?", default=20, help="training steps to time (default 20)")
    args = parser.parse_args()
    main(args.shared, args.work, args.train_steps)
