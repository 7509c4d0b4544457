"""The README's commands, copy-pasted, on files in the official formats.

A data root like the real one (``val_256.tar`` with a ``val_256/`` prefix, ``places365_val.txt``,
MEPP lists, the senscats file) and a randomly initialised ResNet50 saved exactly like the
official checkpoint are generated in a temporary folder; then every command of the README's
"Commands" block runs there through bash, as a participant would paste it. `data fetch`
is left out: it needs the network (tests/test_fetch.py runs it against a local server).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from test_classifiers import save_official
from test_protect import natural_photo

REPO = Path(__file__).resolve().parents[1]
TEST_NAMES = ["Places365_val_00000013.jpg", "Places365_val_00000015.jpg"]
VAL_NAMES = [f"Places365_val_{i:08d}.jpg" for i in range(20, 26)]
LABELS = {name: i for i, name in enumerate(TEST_NAMES + VAL_NAMES)}  # classes 0.. (airfield, airplane_cabin, ...)


def readme_commands(section: str = "Commands") -> list[str]:
    """The logical lines of the first bash block of the README's `section` (continuations
    joined, comments dropped)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(rf"## {section}\n.*?```bash\n(.*?)```", text, re.S).group(1)
    joined = re.sub(r"\\\n\s*", "", block)
    commands = [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    return [c for c in commands if c and not c.startswith("#")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared) -> Path:
    """A participant's folder: the repository's entry points, official-format data, a random ResNet50."""
    nima = shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    root = tmp_path_factory.mktemp("participant")
    work = root / "protector"
    work.mkdir()
    (root / "shared").symlink_to(nima.parents[1])  # the README names ../shared/nima/...
    for entry in ("train.py", "infer.py", "configs"):
        (work / entry).symlink_to(REPO / entry)
    data = work / "data"
    data.mkdir()
    with tarfile.open(data / "val_256.tar", "w") as archive:
        for seed, name in enumerate(LABELS):
            buffer = io.BytesIO()
            Image.fromarray(natural_photo(256, 256, seed)).save(buffer, "JPEG", quality=92)
            info = tarfile.TarInfo(f"val_256/{name}")
            info.size = buffer.tell()
            archive.addfile(info, io.BytesIO(buffer.getvalue()))
    (data / "places365_val.txt").write_text("".join(f"{n} {c}\n" for n, c in LABELS.items()))
    (data / "MEPP18val.csv").write_text("".join(f'"{n}","{LABELS[n]}"\n' for n in VAL_NAMES))
    (data / "MEPP19test.csv").write_text("".join(f"{n}\n" for n in TEST_NAMES))
    (data / "MEPP18senscats.txt").write_bytes(shared.path("data/mepp/MEPP18senscats.txt").read_bytes())
    (data / "categories_places365.txt").write_text(
        shared.path("standin/categories_places365.txt").read_text(encoding="utf-8"))
    (work / "weights").mkdir()
    torch.manual_seed(0)
    save_official(torchvision.models.resnet50(num_classes=365).eval(), work / "weights" / "resnet50_places365.pth.tar",
                  "resnet50")
    photos = work / "my_photos"
    photos.mkdir()
    for seed in range(2):
        Image.fromarray(natural_photo(160, 120, 50 + seed)).save(photos / f"holiday_{seed}.jpg", quality=92)
    return work


def run_in(work: Path, command: str, prelude: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "OMP_NUM_THREADS": "2", "WANDB_MODE": "disabled"}
    return subprocess.run(["bash", "-c", f"{prelude}\n{command}"], cwd=work, env=env, capture_output=True, text=True,
                           timeout=900)


@pytest.mark.slow
def test_every_readme_command_works_as_written(workdir) -> None:
    commands = readme_commands()
    assert sum(c.startswith(("protector ", "python ")) for c in commands) >= 8
    prelude = "\n".join(c for c in commands if re.match(r"^[A-Z_]+=", c))  # ATTACK="..."
    ran = []
    for command in commands:
        if re.match(r"^[A-Z_]+=", command) or command.startswith("protector data fetch"):
            continue
        if command.startswith("python train.py fit"):
            # As written it stops on this CPU-only machine with the one line to add; the README gives it.
            result = run_in(workdir, command, prelude)
            assert result.returncode == 1 and "--trainer.accelerator cpu" in result.stderr, result.stderr[-2000:]
            cpu = re.search(r"add: (--trainer\.accelerator cpu .*?--trainer\.sync_batchnorm false)", result.stderr)
            # Small enough for a test: one epoch of 6 photos, batches of 3.
            command += f" {cpu.group(1)} --trainer.max_epochs 1 --data.batch_size 3 --data.num_workers 0"
        result = run_in(workdir, command, prelude)
        ran.append(command)
        if command.startswith("protector data check"):
            # Generated stand-ins for the official files: present, with other checksums.
            assert result.returncode == 1 and "val_256.tar" in result.stdout, result.stdout[-2000:]
            continue
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert (workdir / "runs" / "mepp19" / "protector.pt").is_file()
    assert sorted(p.name for p in (workdir / "protected").glob("*.jpg")) == ["holiday_0.jpg", "holiday_1.jpg"]
    assert (workdir / "submission" / "rteam_base.zip").is_file()
    assert (workdir / "report" / "report.html").is_file()
    assert len(ran) >= 7
