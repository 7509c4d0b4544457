"""`protector train` / `train.py`: LightningCLI over ProtectorModule and TrainingDataModule.

Examples::

    python train.py fit --config configs/standin.yaml --trainer.default_root_dir runs/standin
    python train.py fit --config configs/standin.yaml --trainer.default_root_dir runs/standin --ckpt_path last
    python train.py fit --config configs/debug.yaml --trainer.logger=false
    python train.py validate --config configs/standin.yaml --ckpt_path runs/standin/checkpoints/last.ckpt

The run folder (``trainer.default_root_dir``) receives ``checkpoints/`` (best and
``last.ckpt``), ``config.yaml``, ``protector.pt`` (the best generator, after fit) and, with the
default Weights & Biases logger, ``wandb/`` (offline unless ``WANDB_API_KEY`` is set).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import torch

from pytorch_lightning import Trainer
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.exceptions import SIGTERMException

from protector.callbacks import ExportProtector, TrainingProgress
from protector.config_guard import check_class_paths, enforced_import_paths, split_allowances, split_search_paths
from protector.search_paths import allow_search_paths
from protector.data.training import TrainingDataModule
from protector.limits import MAX_WEIGHTS_BYTES
from protector.paths import NotAFileError, regular_file_size
from protector.module import NonFiniteLossError, ProtectorModule
from protector.old_model_keys import add_old_model_keys, move_old_model_keys

SUBCOMMANDS = ("fit", "validate")  # no test_step: validation is the held-out measurement


class ProtectorCLI(LightningCLI):
    """LightningCLI with the run folder conventions of protector.

    - ``checkpoint.*``: a ModelCheckpoint that is always present (monitor ``val/top1_fooled``,
      mode max, ``save_last``), writing to ``<default_root_dir>/checkpoints`` unless
      ``checkpoint.dirpath`` says otherwise, so ``--ckpt_path last`` finds it on resume.
    - ``export.*``: the :class:`~protector.callbacks.ExportProtector` callback.
    - ``progress.*``: :class:`~protector.callbacks.TrainingProgress`, plain progress lines
      (steps, rate, ETA) when stdout is not a terminal.
    - ``torch_threads``: CPU threads for torch.
    - the old ``model.*`` keys of the loss's margins and the robustifier's settings are read
      into ``model.loss`` and ``model.robustifier``, with a deprecation warning
      (:mod:`protector.old_model_keys`).
    - ``trainer.logger`` left unset means Weights & Biases, project ``protector``, files in
      the run folder, offline unless ``WANDB_API_KEY`` is set; ``--trainer.logger=false``
      turns logging off.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: spec for name, spec in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/top1_fooled",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.save_top_k": 1,
            }
        )
        parser.add_lightning_class_args(ExportProtector, "export")
        parser.add_lightning_class_args(TrainingProgress, "progress")
        add_old_model_keys(parser)
        parser.add_argument(
            "--torch_threads",
            type=Optional[int],
            default=None,
            help="CPU threads for torch (torch.set_num_threads). On a CPU shared with other jobs, 1 "
            "avoids the busy-waiting of oversubscribed threads, which can slow training tenfold.",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # Lightning reads a --ckpt_path file whole right after parsing (its hyperparameters).
        subcommand = self.config.get("subcommand")
        if subcommand:
            _check_resume_file(self.config[subcommand].get("ckpt_path"))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        for message in move_old_model_keys(config.model):
            warnings.warn(message, FutureWarning, stacklevel=2)
        threads = self._get(self.config, "torch_threads")
        if threads is not None:
            if threads < 1:
                raise ValueError(f"torch_threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SIGTERMException as err:
            raise TrainingStopped(self._last_checkpoint()) from err

    def _last_checkpoint(self) -> Path | None:
        """The ``last.ckpt`` a resume would start from, if one was written before the signal."""
        for callback in getattr(self.trainer, "checkpoint_callbacks", []):
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is not None:
                last = Path(callback.dirpath) / f"{ModelCheckpoint.CHECKPOINT_NAME_LAST}{ModelCheckpoint.FILE_EXTENSION}"
                if last.is_file():
                    return last
        return None

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        if config.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
            raise ValueError(
                "this config trains on a GPU (trainer.accelerator gpu) and this machine has none; to train "
                "on the CPU (far slower) add: --trainer.accelerator cpu --trainer.precision 32-true "
                "--trainer.sync_batchnorm false --data.num_workers 2"
            )
        root = Path(config.get("default_root_dir") or os.getcwd())
        if config.get("logger") is None:
            config["logger"] = default_logger(root)
        trainer = super()._instantiate_trainer(config, callbacks)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                # Without this the folder would depend on the logger's run id, and
                # `--ckpt_path last` could not find the previous run's last.ckpt.
                callback.dirpath = os.path.realpath(root / "checkpoints")
        return trainer


def _check_resume_file(ckpt_path: Any) -> None:
    """A `--ckpt_path` file is measured before Lightning reads it whole (a FIFO, a 1 TB file: one line)."""
    if isinstance(ckpt_path, os.PathLike):
        ckpt_path = os.fspath(ckpt_path)
    if not isinstance(ckpt_path, str) or ckpt_path in ("last", "best", "hpc", "registry") or "://" in ckpt_path:
        return
    if not os.path.lexists(ckpt_path):
        return  # Lightning names a missing checkpoint itself
    try:
        regular_file_size(ckpt_path, MAX_WEIGHTS_BYTES, "checkpoint")
    except NotAFileError as err:
        raise ValueError(f"--ckpt_path {err}; give a checkpoint file, or last") from None


class TrainingStopped(Exception):
    """Training stopped by SIGTERM; ``checkpoint`` is the last.ckpt to resume from, or None."""

    def __init__(self, checkpoint: Path | None) -> None:
        super().__init__(str(checkpoint))
        self.checkpoint = checkpoint


def stopped_message(checkpoint: Path | None) -> str:
    """What to do after a SIGTERM: resume from the checkpoint that exists, or start again."""
    if checkpoint is None:
        return ("protector train: stopped by SIGTERM before the first checkpoint (one is saved after each "
                "epoch's validation); no protector.pt was written. Nothing to resume: run the same command again.")
    return (f"protector train: stopped by SIGTERM; no protector.pt was written. Resume from {checkpoint} "
            "(the last checkpoint saved before the signal) by adding --ckpt_path last "
            "to the same command (make run: TRAINER_ARGS='--ckpt_path last').")


def default_logger(root: Path) -> Any:
    """Weights & Biases for project ``protector`` in ``root``; offline without an API key."""
    from pytorch_lightning.loggers import WandbLogger

    # An explicit WANDB_MODE (e.g. disabled) is the user's choice; otherwise no key = offline.
    offline = "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ
    root.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project="protector", save_dir=str(root), offline=offline)


# The spellings the other commands (and checksum errors) use, for what LightningCLI nests deep.
FLAG_ALIASES = {
    "--allow-unpinned": ["--model.classifier.init_args.allow_unpinned", "true"],
    "--classifier-checkpoint": ["--model.classifier.init_args.checkpoint"],
    "--sha256": ["--model.classifier.init_args.sha256"],
}


def expand_aliases(args: list[str]) -> list[str]:
    """Replace the short flags of FLAG_ALIASES (also ``--flag=value``) by their LightningCLI keys."""
    expanded: list[str] = []
    for arg in args:
        flag, eq, value = arg.partition("=")
        if flag in FLAG_ALIASES:
            expanded += FLAG_ALIASES[flag] + ([value] if eq else [])
        else:
            expanded.append(arg)
    return expanded


def cli_main(args: list[str] | None = None, run: bool = True) -> ProtectorCLI:
    """Build (and by default run) the CLI; ``args=None`` reads ``sys.argv``."""
    given, allowed = split_allowances(sys.argv[1:] if args is None else list(args))
    given, folders = split_search_paths(given)
    with allow_search_paths(folders), enforced_import_paths(allowed):
        check_class_paths(given, allowed)  # before LightningCLI imports what the config names
        if args is None:
            # Rewritten in place: LightningCLI warns when given args while sys.argv holds some too.
            sys.argv[1:] = expand_aliases(given)
        return ProtectorCLI(
            ProtectorModule,
            TrainingDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            args=None if args is None else expand_aliases(given),
            run=run,
        )


def run_lightning_cli(argv: list[str] | None = None) -> int:
    """Entry of ``protector train ARGS`` and ``train.py`` (``argv=None``: ``sys.argv``); the exit code."""
    try:
        cli_main(None if argv is None else list(argv))
    except TrainingStopped as stopped:
        # Lightning stops the loop on SIGTERM with a SystemExit whose code means success.
        print(stopped_message(stopped.checkpoint), file=sys.stderr)
        return 128 + signal.SIGTERM
    except SystemExit as exit_:  # argument errors and --help end here
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except (ValueError, FileNotFoundError, NonFiniteLossError) as err:
        # Errors a user can act on (bad file, bad setting, non-finite loss): one clear line.
        print(f"protector train: error: {err}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a protector (LightningCLI: fit, validate; see `protector train --help`)",
        description="Train the generator against a frozen classifier with PyTorch Lightning. "
        "Everything after `train` goes to LightningCLI, e.g. "
        "`protector train fit --config configs/standin.yaml --trainer.default_root_dir runs/x`.",
        add_help=False,
    )
    parser.add_argument("lightning_args", nargs=argparse.REMAINDER, help="LightningCLI arguments")
    parser.set_defaults(func=lambda args: run_lightning_cli(args.lightning_args))
