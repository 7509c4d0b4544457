"""Lightning callbacks of the protector training."""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint, Timer
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from protector.export import save_protector
from protector.generator import BoundedProtector


class ExportProtector(Callback):
    r"""After ``fit``, write the best generator (and enhancer) as ``protector.pt`` (:mod:`protector.export`).

    "Best" is the checkpoint that the trainer's ``ModelCheckpoint`` ranked first (its
    ``monitor``, e.g. ``val/top1_fooled``, mode max). Without a best checkpoint (no
    validation, ``fast_dev_run``, no monitor) the generator's final weights are written, with a
    warning. Only global rank zero writes; it works with any logger or none.

    Args:
        filename: name of the file written in ``dirpath``. Default: ``protector.pt``.
        dirpath: folder to write into. Default: the trainer's ``default_root_dir``.
    """

    def __init__(self, filename: str = "protector.pt", dirpath: str | None = None) -> None:
        super().__init__()
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name, got {filename!r}")
        self.filename = filename
        self.dirpath = dirpath
        self.last_path: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        trained = {"generator": copy.deepcopy(pl_module.generator).cpu()}
        if getattr(pl_module, "enhancer", None) is not None:
            trained["enhancer"] = copy.deepcopy(pl_module.enhancer).cpu()
        source, score, monitor = self._load_best(trainer, trained)
        path = Path(self.dirpath or trainer.default_root_dir) / self.filename
        meta = {
            "source": source,
            "monitor": monitor,
            "score": score,
            "epoch": int(trainer.current_epoch),
            "global_step": int(trainer.global_step),
            "classifier": _describe(pl_module.classifier),
            "hparams": _plain(dict(pl_module.hparams)),
        }
        enhancer = trained["enhancer"].eval() if "enhancer" in trained else None
        save_protector(path, BoundedProtector(trained["generator"].eval(), float(pl_module.eps), enhancer=enhancer), meta)
        self.last_path = path
        rank_zero_info(f"protector written to {path} (from {source})")

    @staticmethod
    def _load_best(trainer: Trainer, trained: dict[str, torch.nn.Module]) -> tuple[str, float | None, str | None]:
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") if isinstance(callback, ModelCheckpoint) else ""
        if not best or not Path(best).is_file():
            rank_zero_warn("no best checkpoint to export (no validation or no monitor); writing the final generator")
            return "final weights", None, None
        checkpoint = torch.load(best, map_location="cpu", weights_only=True)
        for name, module in trained.items():  # the checkpoint keys are the module's attribute names
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)})
        score = callback.best_model_score
        return str(best), None if score is None else float(score), callback.monitor


class TrainingProgress(Callback):
    """Progress lines for a log that is not a terminal: steps done of the total, rate, ETA.

    Lightning's bar redraws one line in place, so a log file shows nothing for a whole epoch;
    this callback prints a plain line every ``every_n_seconds`` (and at the end of each epoch
    and validation) on global rank zero. The ETA is the training steps left at the rate of
    this run so far, capped by ``trainer.max_time`` when that is set; validation is not in it.

    Args:
        enabled: True always, False never; None (default) only when stdout is not a terminal
            (on a terminal the progress bar already shows the same).
        every_n_seconds: seconds between lines during training. Default: 60.

    Example line::

        train: epoch 1/2, step 120/676 (18%), 1.32 s/step, ETA 12 min
    """

    def __init__(self, enabled: bool | None = None, every_n_seconds: float = 60.0) -> None:
        super().__init__()
        if every_n_seconds <= 0:
            raise ValueError(f"every_n_seconds must be > 0, got {every_n_seconds}")
        self.enabled = enabled
        self.every_n_seconds = every_n_seconds
        self.stream: TextIO = sys.stdout
        self._start_time = 0.0
        self._start_step = 0
        self._last_line = 0.0
        self._val_start = 0.0

    def _active(self, trainer: Trainer) -> bool:
        if not trainer.is_global_zero:
            return False
        return (not self.stream.isatty()) if self.enabled is None else self.enabled

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start_time = self._last_line = time.monotonic()
        self._start_step = trainer.global_step
        if self._active(trainer):
            total = _total_steps(trainer)
            self._print(f"train: {total if total is not None else 'unknown number of'} steps "
                        f"({trainer.num_training_batches} a epoch), starting at step {trainer.global_step}")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        now = time.monotonic()
        if now - self._last_line >= self.every_n_seconds and self._active(trainer):
            self._last_line = now
            self._print(self.status(trainer, now))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer):
            self._last_line = time.monotonic()
            self._print(self.status(trainer, self._last_line, prefix="train: end of"))

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_start = time.monotonic()
        if self._active(trainer) and not trainer.sanity_checking:
            batches = sum(trainer.num_val_batches) if trainer.num_val_batches else 0
            self._print(f"validation: {batches} batches")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._active(trainer) and not trainer.sanity_checking:
            fooled = trainer.callback_metrics.get("val/top1_fooled")
            score = "" if fooled is None else f", val/top1_fooled {float(fooled):.4f}"
            self._print(f"validation: done in {_duration(time.monotonic() - self._val_start)}{score}")

    def status(self, trainer: Trainer, now: float, prefix: str = "train:") -> str:
        """One line: epoch, step of total, seconds per step, ETA."""
        step, total = trainer.global_step, _total_steps(trainer)
        done = step - self._start_step
        epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        line = f"{prefix} epoch {trainer.current_epoch + 1}/{epochs}, step {step}"
        if total:
            line += f"/{total} ({100 * step / total:.0f}%)"
        if done <= 0:
            return line
        seconds_per_step = (now - self._start_time) / done
        line += f", {seconds_per_step:.2f} s/step"
        eta = None if not total else max(total - step, 0) * seconds_per_step
        remaining = _time_remaining(trainer)
        if remaining is not None:
            eta = remaining if eta is None else min(eta, remaining)
        if eta is not None:
            line += f", ETA {_duration(eta)}" + (" (max_time)" if remaining is not None and eta == remaining else "")
        return line


def _total_steps(trainer: Trainer) -> int | None:
    total = trainer.estimated_stepping_batches
    return int(total) if isinstance(total, (int, float)) and math.isfinite(total) else None


def _time_remaining(trainer: Trainer) -> float | None:
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            remaining = callback.time_remaining("train")
            return None if remaining is None else max(float(remaining), 0.0)
    return None


def _duration(seconds: float) -> str:
    """A rough human duration: '45 s', '12 min', '3 h 05 min'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes // 60} h {minutes % 60:02d} min"


def _describe(classifier: torch.nn.Module) -> str:
    inner = getattr(classifier, "model", classifier)
    return getattr(inner, "class_path", None) or getattr(inner, "arch", None) or type(inner).__qualname__


def _plain(value: Any) -> Any:
    """Keep what torch.load(weights_only=True) reads back: numbers, strings, lists, dicts."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)
