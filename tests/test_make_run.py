"""`make run` end to end on a CPU-only machine, offline, with a data root in the official formats.

The participant's folder of tests/test_readme_commands.py (a tiny ``val_256.tar`` of JPEGs
under ``val_256/``, MEPP-style lists, a random ResNet50 saved exactly like the official
checkpoint) plus the lists the fetch step checks, and no devkit tar: only the two files
extracted from it, as an offline user has them. `make run GPU=0` must reach the submission
zip and the report, with the CPU recipe shortened through TRAINER_ARGS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from test_readme_commands import REPO, TEST_NAMES, readme_commands, run_in, workdir  # noqa: F401 (the fixture)

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


@pytest.mark.slow
def test_make_run_on_a_cpu_machine_reaches_the_submission_zip(workdir) -> None:  # noqa: F811
    (workdir / "Makefile").symlink_to(REPO / "Makefile")
    data = workdir / "data"
    for name in ("MEPP18test.csv", "MEPP18test_manual.csv", "MEPP19test_manual.csv"):
        (data / name).write_text("".join(f"{n}\n" for n in TEST_NAMES))  # not the official bytes: kept
    assert not (data / "filelist_places365-standard.tar").exists()
    venv = Path(sys.executable).parents[1]
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    env.update(PYTHONPATH=str(REPO), WANDB_MODE="disabled", OMP_NUM_THREADS="2")
    trainer_args = "--trainer.max_epochs 1 --data.batch_size 3 --data.num_workers 0 --trainer.logger=false"
    result = subprocess.run(
        ["make", "--no-print-directory", "-o", f"{venv}/.installed", "run", f"VENV={venv}", "GPU=0",
         "KEEP_MISMATCHED=1", "TEAM=rteam", "REFINE_STEPS=1", f"TRAINER_ARGS={trainer_args}"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "make run: no GPU found: CPU recipe" in result.stdout
    assert "filelist_places365-standard.tar" in output and "not needed" in output  # the devkit tar: not asked for
    submission = workdir / "runs" / "mepp19" / "submission" / "rteam_unet.zip"
    with zipfile.ZipFile(submission) as archive:
        assert sorted(archive.namelist()) == sorted(f"rteam_unet_{name}" for name in TEST_NAMES)
    assert (workdir / "runs" / "mepp19" / "report" / "report.html").is_file()

    # Then the README's "Check the result", as written (with this run's team name), on that zip.
    (workdir / ".venv").symlink_to(venv)
    checks = readme_commands("Check the result")
    assert [c.split()[:2] for c in checks] == [[".venv/bin/protector", "submission"], [".venv/bin/protector", "evaluate"]]
    for command in checks:
        result = run_in(workdir, command.replace("myteam_unet", "rteam_unet"))
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    assert (workdir / "report" / "report.html").is_file()
