"""`train.py` / `protector train`: configs, defaults, a real debug fit, resume after SIGKILL."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
import yaml
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger

from protector.callbacks import ExportProtector
from protector.commands.train import cli_main, run_lightning_cli
from protector.export import load_protector
from protector.enhance import ToneCurveEnhancer
from protector.appeal_loss import NimaAppeal
from protector.losses import SSIMFidelity, TopKMargin, UntargetedCE
from protector.views import VIEW_SETS, ViewSampler

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    # Configs name ../shared and runs/ relative to the repository root, as a user runs them.
    monkeypatch.chdir(REPO)


@pytest.fixture
def standin(shared):
    """The stand-in classifier and photos that configs/debug.yaml and standin.yaml name."""
    for relative in ("standin/squeezenet_places.py", "standin/squeezenet_places365_bn.pt", "standin/images.tsv"):
        shared.path(relative)
    return shared


def test_appeal_overlay_adds_an_enhancer_and_its_objective(standin) -> None:
    shared_nima = standin.path("nima/weights_mobilenet_aesthetic_0.07.hdf5")
    args = ["--config", "configs/standin.yaml", "--config", "configs/overlays/appeal.yaml",
            "--model.appeal.init_args.weights", str(shared_nima), "--trainer.logger=false"]
    cli = cli_main(args, run=False)
    assert isinstance(cli.model.enhancer, ToneCurveEnhancer)
    assert isinstance(cli.model.appeal, NimaAppeal)
    assert cli.model.protector.enhancer is cli.model.enhancer


def test_pure_overlay_gives_the_best_measured_pure_generator(standin) -> None:
    args = ["--config", "configs/standin.yaml", "--config", "configs/overlays/pure.yaml", "--trainer.logger=false"]
    cli = cli_main(args, run=False)
    generator = cli.model.generator
    assert not generator.guided and generator.bound == "clamp" and generator.config["base_channels"] == 16
    assert isinstance(cli.model.objective, UntargetedCE) and cli.model.objective.relativistic
    assert cli.model.eps == pytest.approx(4 / 255, abs=1e-6)


@pytest.fixture
def one_thread():
    # Two cores shared by several jobs: oversubscribed torch threads busy-wait.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", PYTHONUNBUFFERED="1")
    return env


def test_there_are_the_three_configs() -> None:
    assert {p.name for p in CONFIGS} >= {"debug.yaml", "standin.yaml", "mepp19.yaml"}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses(config: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: protector.generator.UNetGenerator" in printed
    assert "monitor: val/top1_fooled" in printed


@pytest.mark.parametrize("name", ["debug.yaml", "standin.yaml"])
def test_standin_configs_instantiate(name: str, standin) -> None:
    cli = cli_main(["--config", f"configs/{name}", "--trainer.logger=false"], run=False)
    assert cli.model.eps == pytest.approx(2 / 255, abs=1e-6)
    assert isinstance(cli.trainer.checkpoint_callback, ModelCheckpoint)
    assert cli.trainer.checkpoint_callback.save_last
    assert any(isinstance(c, ExportProtector) for c in cli.trainer.callbacks)
    root = Path(cli.trainer.default_root_dir).resolve()
    assert Path(cli.trainer.checkpoint_callback.dirpath) == root / "checkpoints"


def test_default_logger_is_offline_wandb_in_the_run_folder(standin, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    args = ["--config", "configs/debug.yaml", "--trainer.logger", "null", "--trainer.default_root_dir", str(tmp_path)]
    cli = cli_main(args, run=False)  # no fit: the wandb run is never started
    logger = cli.trainer.logger
    assert isinstance(logger, WandbLogger)
    assert logger.save_dir == str(tmp_path)
    assert logger._offline
    assert logger._wandb_init["project"] == "protector"


def test_checkpoint_and_model_settings_can_be_overridden(standin) -> None:
    args = [
        "--config", "configs/debug.yaml",
        "--checkpoint.monitor", "val/top5_fooled",
        "--model.eps", "0.0039216",
        "--model.loss", "margin",
    ]
    cli = cli_main(args, run=False)
    assert cli.trainer.checkpoint_callback.monitor == "val/top5_fooled"
    assert cli.model.eps == pytest.approx(1 / 255, abs=1e-6)
    assert cli.model.objective.k == 1  # "margin": the top-1 margin


def test_loss_is_an_object_given_by_class_path(standin) -> None:
    args = [
        "--config", "configs/debug.yaml",
        "--model.loss", "protector.losses.TopKMargin", "--model.loss.k", "3", "--model.loss.kappa", "1.5",
        "--model.fidelity", "protector.losses.SSIMFidelity",
    ]
    cli = cli_main(args, run=False)
    assert isinstance(cli.model.objective, TopKMargin)
    assert (cli.model.objective.k, cli.model.objective.kappa) == (3, 1.5)
    assert isinstance(cli.model.fidelity_term, SSIMFidelity)


# ProtectorModule's arguments before the loss's margins and the robustifier's settings moved
# into those objects: configs, flags and checkpoints that spell them so still work.
OLD_MODEL_KEYS = {"loss": "topk", "top_k": 3, "kappa": 2.5, "robust": True, "jpeg_quality": [80, 90],
                  "jpeg_prob": 0.5, "resize_prob": 0.2}


def _built_as_the_old_keys_said(model) -> None:
    assert isinstance(model.objective, TopKMargin) and (model.objective.k, model.objective.kappa) == (3, 2.5)
    robustifier = model.robustifier
    assert (robustifier.jpeg_quality, robustifier.jpeg_prob, robustifier.resize_prob) == ((80, 90), 0.5, 0.2)


def test_old_model_keys_in_a_config_or_flags_still_work(standin, tmp_path) -> None:
    old = tmp_path / "old.yaml"
    old.write_text(yaml.safe_dump({"model": OLD_MODEL_KEYS}))
    flags = [f"--model.{key}={value if key != 'jpeg_quality' else '[80, 90]'}" for key, value in OLD_MODEL_KEYS.items()]
    for spelling in (["--config", str(old)], flags):
        with pytest.warns(FutureWarning, match="model.top_k, model.kappa: deprecated"):
            cli = cli_main(["--config", "configs/debug.yaml", *spelling, "--trainer.logger=false"], run=False)
        _built_as_the_old_keys_said(cli.model)
    with pytest.warns(FutureWarning, match="ignored with this loss"):
        cli = cli_main(["--config", "configs/debug.yaml", "--model.loss", "ce", "--model.kappa", "3",
                        "--trainer.logger=false"], run=False)
    assert isinstance(cli.model.objective, UntargetedCE)  # as before: kappa never set the cross-entropy


def test_bad_arguments_give_exit_codes(standin, capsys) -> None:
    assert run_lightning_cli(["fit", "--config", "configs/debug.yaml", "--model.eps", "2"]) == 1
    assert "eps must be in (0, 1]" in capsys.readouterr().err
    assert run_lightning_cli(["fit", "--no_such_option", "1"]) == 2
    assert run_lightning_cli(["test", "--config", "configs/debug.yaml"]) == 2  # no test_step: not offered
    assert run_lightning_cli(["--help"]) == 0


@pytest.fixture(scope="module")
def official_resnet18(tmp_path_factory) -> Path:
    """A random ResNet18 saved like the official Places365 file (no sha256 is pinned for it)."""
    from test_classifiers import save_official

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18_places365.pth.tar"
    return save_official(torchvision.models.resnet18(num_classes=365), path, "resnet18")


def mepp19_args(checkpoint: Path, *more: str) -> list[str]:
    # The data files are only checked for existence before the attack model loads.
    data = checkpoint.parent
    for name in ("val_256.tar", "MEPP18val.csv", "places365_val.txt"):
        (data / name).touch()
    return ["fit", "--config", "configs/mepp19.yaml", "--model.classifier.init_args.arch", "resnet18",
            "--classifier-checkpoint", str(checkpoint), "--model.sensitive_categories", "null",
            "--data.images", str(data / "val_256.tar"), "--data.train_list", str(data / "MEPP18val.csv"),
            "--data.labels_file", str(data / "places365_val.txt"),
            "--trainer.logger=false", *more]


def test_unpinned_attack_model_is_one_line_naming_a_flag_that_works(official_resnet18, capsys) -> None:
    assert run_lightning_cli(mepp19_args(official_resnet18)) == 1
    error = capsys.readouterr().err
    assert "no sha256 is pinned" in error and "--allow-unpinned" in error and "Traceback" not in error
    # The flag the message names is accepted by train.py too.
    cpu = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.sync_batchnorm", "false"]
    cli = cli_main(mepp19_args(official_resnet18, "--allow-unpinned", *cpu)[1:], run=False)
    assert cli.model.classifier.model.arch == "resnet18"
    assert isinstance(cli.trainer.accelerator, CPUAccelerator)


MEPP19_APPEAL = ["--config", "configs/overlays/appeal.yaml",
                 "--model.appeal.init_args.weights", "weights/weights_mobilenet_aesthetic_0.07.hdf5"]


def test_mepp19_appeal_variant_keeps_the_task_settings_and_adds_the_edit(capsys) -> None:
    # The usage line of configs/mepp19.yaml (and make run APPEAL=1), as the merged config.
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", "configs/mepp19.yaml", *MEPP19_APPEAL, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: protector.enhance.ToneCurveEnhancer" in printed
    assert "class_path: protector.appeal_loss.NimaAppeal" in printed
    assert "weights: weights/weights_mobilenet_aesthetic_0.07.hdf5" in printed
    assert "precision: bf16-mixed" in printed and "arch: resnet50" in printed
    assert "enhancer_lr: 0.003" in printed and "edit_weight: 0.05" in printed


def test_a_config_naming_the_appeal_objective_by_its_old_class_path_still_loads(capsys) -> None:
    # NimaAppeal moved from protector.losses to protector.appeal_loss; older configs and the
    # hyperparameters saved in checkpoints name the old path.
    old = ["--model.appeal.class_path", "protector.losses.NimaAppeal"]
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", "configs/mepp19.yaml", *MEPP19_APPEAL, *old, "--print_config"])
    assert exit_.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "NimaAppeal" in printed and "edit_weight: 0.05" in printed


def test_mepp19_appeal_variant_builds(official_resnet18, shared) -> None:
    nima = str(shared.path("nima/weights_mobilenet_aesthetic_0.07.hdf5"))
    cpu = ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--trainer.sync_batchnorm", "false"]
    args = mepp19_args(official_resnet18, "--allow-unpinned", *cpu)[1:]
    args[2:2] = [*MEPP19_APPEAL[:3], nima]  # the overlay right after the base config
    cli = cli_main(args, run=False)
    assert isinstance(cli.model.enhancer, ToneCurveEnhancer) and isinstance(cli.model.appeal, NimaAppeal)
    assert cli.model.protector.enhancer is cli.model.enhancer
    assert cli.model.classifier.model.arch == "resnet18" and cli.model.hparams.enhancer_lr == 0.003
    assert cli.model.appeal.edit_weight == 0.05


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_gpu_config_on_a_cpu_machine_says_how_to_run_on_the_cpu(official_resnet18, capsys) -> None:
    assert run_lightning_cli(mepp19_args(official_resnet18, "--allow-unpinned")) == 1
    error = capsys.readouterr().err
    assert "has none" in error and "--trainer.accelerator cpu --trainer.precision 32-true" in error


def test_protector_command_routes_train_to_lightning(capsys) -> None:
    from protector.cli import main

    assert main(["train", "fit", "--help"]) == 0
    assert "--model.eps" in capsys.readouterr().out


def test_debug_fit_writes_protector_and_resumes(standin, tmp_path, one_thread) -> None:
    run = tmp_path / "run"
    common = ["--config", "configs/debug.yaml", "--trainer.default_root_dir", str(run), "--trainer.logger=false"]
    cli_main(["fit", *common])
    protector = load_protector(run / "protector.pt")
    assert protector.eps == pytest.approx(2 / 255, abs=1e-6)
    assert (run / "config.yaml").is_file()
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps_one_epoch = last["global_step"]
    assert steps_one_epoch > 0
    # Resume from last.ckpt for one more epoch: the step count continues, it does not restart.
    cli_main(["fit", *common, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 2 * steps_one_epoch
    assert resumed["epoch"] > last["epoch"]
    assert resumed["optimizer_states"][0]["state"]  # Adam moments were carried over
    # A checkpoint written before the margins and robustness settings moved holds them as
    # hyperparameters of the module; Lightning reads them back from a --ckpt_path file.
    resumed["hyper_parameters"].update(OLD_MODEL_KEYS)
    torch.save(resumed, tmp_path / "old.ckpt")
    with pytest.warns(FutureWarning, match="model.jpeg_quality, model.jpeg_prob, model.resize_prob: deprecated"):
        cli = cli_main(["validate", *common, "--ckpt_path", str(tmp_path / "old.ckpt")])
    _built_as_the_old_keys_said(cli.model)


@pytest.mark.slow
def test_resume_after_sigkill_continues(standin, tmp_path) -> None:
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    common = [
        sys.executable, "train.py", "fit", "--config", "configs/debug.yaml",
        "--trainer.default_root_dir", str(run), "--trainer.max_epochs", "6",
        "--checkpoint.every_n_train_steps", "1", "--checkpoint.monitor", "null",
        "--checkpoint.save_top_k", "-1", "--checkpoint.filename", "{step}",
        "--trainer.check_val_every_n_epoch", "100", "--torch_threads", "1",
    ]
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(common, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        # Kill it hard in the middle of training, once a few steps are on disk.
        while time.monotonic() < deadline and len(list(checkpoints.glob("step=*.ckpt"))) < 3:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    before = {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step=*.ckpt")}
    killed_at = torch.load(checkpoints / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < killed_at < 12  # 6 epochs x 2 steps: it really was stopped midway
    assert not (run / "protector.pt").exists()

    second = subprocess.run([*common, "--ckpt_path", "last"], cwd=REPO, env=_env(), capture_output=True, timeout=300)
    output = (second.stdout + second.stderr).decode(errors="replace")
    assert second.returncode == 0, output[-3000:]
    assert "Restored all states from the checkpoint" in output
    final = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert final["global_step"] == 12
    after = {p.name: p.stat().st_mtime_ns for p in checkpoints.glob("step=*.ckpt")}
    # Steps done before the kill were not redone: their files are untouched, only later ones are new.
    for name, mtime in before.items():
        assert after[name] == mtime, name
    # A step saved after last.ckpt but before the kill is redone on resume and saved as "step=N-v1".
    new_steps = sorted(int(re.match(r"step=(\d+)", name).group(1)) for name in after.keys() - before.keys())
    assert new_steps and min(new_steps) >= killed_at
    assert (run / "protector.pt").is_file()


@pytest.mark.slow
def test_sigterm_stops_training_like_ctrl_c(standin, tmp_path) -> None:
    """SIGTERM (a scheduler's stop, `kill`): a non-zero exit, no protector.pt, resumable."""
    run = tmp_path / "run"
    command = [
        sys.executable, "train.py", "fit", "--config", "configs/debug.yaml", "--trainer.default_root_dir", str(run),
        "--trainer.max_epochs", "50", "--checkpoint.every_n_train_steps", "1", "--checkpoint.monitor", "null",
        "--trainer.check_val_every_n_epoch", "100", "--trainer.logger=false", "--torch_threads", "1",
    ]
    with open(tmp_path / "train.log", "wb") as log:
        training = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (run / "checkpoints" / "last.ckpt").exists():
            assert training.poll() is None, (tmp_path / "train.log").read_text()[-3000:]
            time.sleep(0.2)
        training.send_signal(signal.SIGTERM)
        training.wait(timeout=120)
    output = (tmp_path / "train.log").read_text()
    assert training.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "stopped by SIGTERM" in output and "--ckpt_path last" in output
    assert not (run / "protector.pt").exists()
    stopped_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < stopped_at < 100  # 50 epochs x 2 steps: it stopped soon


@pytest.mark.slow
def test_shortened_standin_run_protects(standin, tmp_path) -> None:
    """A few minutes of the real stand-in recipe protect the saved JPEG at 2/255 (a lower bar than BENCHMARKS.md)."""
    run = tmp_path / "run"
    command = [
        sys.executable, "train.py", "fit", "--config", "configs/standin.yaml",
        "--trainer.default_root_dir", str(run), "--trainer.logger=false",
        "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "2",
        "--data.limit", "400", "--torch_threads", "1",
    ]
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, timeout=1500)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output[-3000:]
    line = [ln for ln in output.splitlines() if " val: " in ln][-1]
    values = dict(zip(line.split(" val: ")[1].split()[::2], map(float, line.split(" val: ")[1].split()[1::2])))
    print(line)
    assert values["linf_max"] <= 2.0 + 1e-3
    # Every held-out photo (not only the confident ones of the benchmark), as real JPEG q90.
    assert values["top1_fooled"] >= 0.95, line
    assert values["top5_fooled"] >= 0.75, line
    assert values["psnr"] > 35
    assert load_protector(run / "protector.pt").eps == pytest.approx(2 / 255, abs=1e-6)


def test_cpu_overlay_makes_the_task_recipe_a_bounded_cpu_run(capsys) -> None:
    """`make run` without a GPU: configs/mepp19.yaml + configs/overlays/cpu.yaml, the task's data and model kept."""
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", "configs/mepp19.yaml", "--config", "configs/overlays/cpu.yaml", "--print_config"])
    assert exit_.value.code in (0, None)
    config = yaml.safe_load(capsys.readouterr().out)
    trainer = config["trainer"]
    assert (trainer["accelerator"], trainer["precision"], trainer["sync_batchnorm"]) == ("cpu", "32-true", False)
    assert trainer["max_time"] and trainer["max_epochs"] <= 3  # bounded
    assert config["model"]["classifier"]["init_args"]["arch"] == "resnet50"
    assert config["model"]["train_crop"] == 128 and config["data"]["images"] == "data/val_256.tar"


def test_cpu_overlay_builds_on_a_machine_without_a_gpu(official_resnet18) -> None:
    cli = cli_main(mepp19_args(official_resnet18, "--allow-unpinned", "--config", "configs/overlays/cpu.yaml")[1:],
                   run=False)
    assert isinstance(cli.trainer.accelerator, CPUAccelerator)
    assert cli.trainer.max_epochs == 2 and any(type(c).__name__ == "Timer" for c in cli.trainer.callbacks)


def test_training_prints_progress_lines_to_a_log(standin, tmp_path, one_thread, capsys) -> None:
    """stdout is not a terminal here (captured): plain lines with steps done of the total, rate and ETA."""
    run = tmp_path / "run"
    assert run_lightning_cli(["fit", "--config", "configs/debug.yaml", "--trainer.default_root_dir", str(run),
                              "--trainer.max_epochs", "2", "--progress.every_n_seconds", "0.001"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("train: ")]
    assert lines[0] == "train: 4 steps (2 a epoch), starting at step 0"
    assert re.search(r"^train: epoch 2/2, step 3/4 \(75%\), [\d.]+ s/step, ETA \d+ s$", out, re.M), out
    assert re.search(r"^train: end of epoch 2/2, step 4/4 \(100%\)", out, re.M)
    assert re.search(r"^validation: done in \d+ s, val/top1_fooled [\d.]+$", out, re.M)


def test_progress_lines_are_off_on_a_terminal() -> None:
    from protector.callbacks import TrainingProgress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    progress = TrainingProgress()
    progress.stream = Terminal()
    trainer = type("T", (), {"is_global_zero": True})()
    assert not progress._active(trainer)
    progress.stream = io.StringIO()
    assert progress._active(trainer)
    assert not TrainingProgress(enabled=False)._active(trainer)


def test_stop_message_names_a_checkpoint_only_when_there_is_one(tmp_path) -> None:
    from protector.commands.train import stopped_message

    early = stopped_message(None)
    assert "Nothing to resume" in early and "--ckpt_path" not in early
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"Resume from {last}" in stopped_message(last) and "--ckpt_path last" in stopped_message(last)


@pytest.mark.slow
def test_sigterm_before_any_checkpoint_does_not_offer_a_resume(standin, tmp_path) -> None:
    run = tmp_path / "run"
    command = [
        sys.executable, "train.py", "fit", "--config", "configs/debug.yaml", "--trainer.default_root_dir", str(run),
        "--trainer.max_epochs", "500", "--checkpoint.save_last", "false", "--checkpoint.save_top_k", "0",
        "--trainer.check_val_every_n_epoch", "1000", "--trainer.logger=false", "--torch_threads", "1",
    ]
    log_path = tmp_path / "train.log"
    with open(log_path, "wb") as log:
        training = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and "train: " not in log_path.read_text():
            assert training.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        training.send_signal(signal.SIGTERM)
        training.wait(timeout=120)
    output = log_path.read_text()
    assert training.returncode == 128 + signal.SIGTERM, output[-3000:]
    assert "stopped by SIGTERM before the first checkpoint" in output and "--ckpt_path" not in output
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def test_fullsize_views_config_trains_through_views_at_the_working_scale(standin) -> None:
    standin.path("fullsize/urban100_img_001.jpg")
    cli = cli_main(["--config", "configs/fullsize_views.yaml", "--trainer.logger=false"], run=False)
    assert isinstance(cli.model.robustifier.views, ViewSampler)
    assert cli.model.robustifier.views == VIEW_SETS["shared"]  # random sizes: a generator learns between them
    assert cli.datamodule.working_side == 512 and cli.datamodule.image_size == 512
    # The guide over a classifier's resizes, from the working copy as it is down to the smallest view.
    assert cli.model.protector.generator.guide_shorter_sides == (512, 384, 288, 224)
