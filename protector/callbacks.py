"""Lightning callbacks of the protector training."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from protector.export import save_protector


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
        save_protector(path, trained["generator"].eval(), float(pl_module.eps), meta=meta, enhancer=enhancer)
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
