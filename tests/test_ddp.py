"""DDP on 2 CPU processes (gloo): trains, syncs metrics, rank zero alone writes the files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from protector.data.training import TrainingDataModule
from protector.export import load_protector

REPO = Path(__file__).resolve().parents[1]


def _val_count(limit: int) -> int:
    dm = TrainingDataModule(
        "../shared/standin/images", "../shared/standin/images.tsv", val_fraction=0.25, limit=limit, num_workers=0
    )
    dm.setup("fit")
    return len(dm.val_entries)


@pytest.mark.slow
def test_ddp_two_cpu_processes(shared, tmp_path, monkeypatch) -> None:
    shared.path("standin/images.tsv")
    monkeypatch.chdir(REPO)
    # An even number of validation images, so DistributedSampler pads nothing and the
    # synced metric must equal a single-process validation of the same weights exactly.
    limit = next(n for n in range(16, 40) if _val_count(n) % 2 == 0 and _val_count(n) >= 4)
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    command = [
        sys.executable, "train.py", "fit", "--config", "configs/debug.yaml",
        "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
        "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "2",
        "--data.limit", str(limit), "--data.batch_size", "2",
        # PSNR is continuous: only a value reduced over both ranks can match the check below.
        "--checkpoint.monitor", "val/psnr",
    ]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, timeout=600)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in output

    # Rank zero alone wrote: one best checkpoint, last.ckpt, one protector.pt.
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert len(checkpoints) == 2 and "last.ckpt" in checkpoints, checkpoints
    assert sorted(p.name for p in run.glob("protector*")) == ["protector.pt"]
    assert output.count("protector written to") == 1
    protector = load_protector(run / "protector.pt")

    # The monitored metric was reduced over both processes: validating the best weights on
    # all validation images in one process gives the same number.
    best = next(p for p in (run / "checkpoints").iterdir() if p.name != "last.ckpt")
    logged = float(torch.load(best, weights_only=True)["callbacks"][_checkpoint_key(best)]["best_model_score"])
    from protector.commands.train import cli_main

    torch.set_num_threads(1)
    cli = cli_main(
        ["--config", "configs/debug.yaml", "--trainer.logger=false", "--data.limit", str(limit),
         "--trainer.default_root_dir", str(tmp_path / "single")],
        run=False,
    )
    metrics = cli.trainer.validate(cli.model, datamodule=cli.datamodule, ckpt_path=str(best), verbose=False)[0]
    assert metrics["val/psnr"] == pytest.approx(logged, abs=1e-3)
    assert protector.meta["score"] == pytest.approx(logged, abs=1e-6)


def _checkpoint_key(path: Path) -> str:
    state = torch.load(path, weights_only=True)["callbacks"]
    return next(k for k in state if k.startswith("ModelCheckpoint"))
