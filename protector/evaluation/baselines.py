"""Classic per-image attacks at the same budget, saved like a protector run for comparison.

FGSM (one gradient step) and PGD (10 steps, step eps/4, random start) from torchattacks
attack the decoded original in memory against the attack model, without the JPEG in their
loss; EOT-PGD (10 sign steps on the top-5 margin through a differentiable JPEG at the run's
quality, :func:`protector.refine.refine`) is the strongest per-image attack with the same
knowledge. Each result is encoded in the protected run's format and quality and written, so
the evaluation re-reads them from disk exactly like the generator's files.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torchattacks
from torch import nn

from protector.images import FORMAT_FOR_SUFFIX, encode_photo, to_tensor, to_uint8, write_atomic
from protector.losses import AttackLoss
from protector.refine import eot_pgd_step_size, refine

BASELINES = ("fgsm", "pgd", "eot-pgd")
PGD_STEPS = 10


@dataclass(frozen=True)
class BaselineSpec:
    """How a baseline attack was run (recorded in the report)."""

    name: str
    eps: float
    alpha: float | None
    steps: int
    random_start: bool

    def describe(self) -> str:
        if self.name == "fgsm":
            return f"torchattacks.FGSM(eps={self.eps:.6g}), no JPEG in the loss"
        if self.name == "eot-pgd":
            return (f"EOT-PGD(eps={self.eps:.6g}, alpha={self.alpha:.6g}, steps={self.steps}, top-5 margin through "
                    "a differentiable JPEG at the output quality)")
        return (f"torchattacks.PGD(eps={self.eps:.6g}, alpha={self.alpha:.6g}, steps={self.steps}, "
                f"random_start={self.random_start}), no JPEG in the loss")


def baseline_spec(name: str, eps: float, steps: int | None = None) -> BaselineSpec:
    """The settings of baseline `name` ('fgsm', 'pgd' or 'eot-pgd') at budget `eps` (fraction of [0, 1]).

    `steps` sets EOT-PGD's number of steps (default 10, the one `evaluate` runs); FGSM takes
    one and PGD ten, so any other count for them is refused.
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    fixed = {"fgsm": 1, "pgd": PGD_STEPS}
    if name in fixed and steps not in (None, fixed[name]):
        raise ValueError(f"{name} runs {fixed[name]} step(s), got steps={steps}")
    if name == "fgsm":
        return BaselineSpec("fgsm", eps, None, 1, False)
    if name == "pgd":
        # Madry et al.'s step of 2.5 * eps / steps, so the walk can reach the boundary.
        return BaselineSpec("pgd", eps, eps / 4, PGD_STEPS, True)
    steps = PGD_STEPS if steps is None else steps
    return BaselineSpec("eot-pgd", eps, eot_pgd_step_size(eps, steps), steps, False)


def baseline_attack(
    spec: BaselineSpec,
    model: nn.Module,
    device: torch.device,
    jpeg_quality: int | None = None,
    loss: AttackLoss | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The attack of `spec` as a function ``(x, y) -> x_adv``, what :func:`run_baseline` runs per photo.

    Args:
        spec: which attack and its budget (:func:`baseline_spec`).
        model: the attack model (RGB [0, 1] in, logits out).
        device: where the attack runs.
        jpeg_quality: EOT-PGD only: the JPEG quality in its loss (None: no JPEG in the loop).
        loss: EOT-PGD only: the objective it descends (None: :func:`protector.refine.refine`'s
            top-5 margin).

    Shape:
        - x: :math:`(B, 3, H, W)` in [0, 1]; y: :math:`(B,)` the classes to push away from;
          output like x, within ``spec.eps`` of it.
    """
    if spec.name == "eot-pgd":
        return partial(_eot_pgd, spec=spec, model=model, jpeg_quality=jpeg_quality, loss=loss)
    if loss is not None:
        raise ValueError(f"{spec.name} attacks the cross-entropy; only eot-pgd takes a loss")
    if spec.name == "fgsm":
        attack = torchattacks.FGSM(model, eps=spec.eps)
    else:
        attack = torchattacks.PGD(model, eps=spec.eps, alpha=spec.alpha, steps=spec.steps,
                                  random_start=spec.random_start)
    attack.set_device(device)
    return attack


def _eot_pgd(x: torch.Tensor, y: torch.Tensor, spec: BaselineSpec, model: nn.Module, jpeg_quality: int | None,
             loss: AttackLoss | None = None):
    return refine(x, x, model, y, spec.eps, steps=spec.steps, step_size=spec.alpha, loss=loss,
                  jpeg_quality=jpeg_quality)


def output_format(protected_name: str) -> str:
    """The encoder format matching a protected file's extension (JPEG when unknown)."""
    return FORMAT_FOR_SUFFIX.get(PurePosixPath(protected_name).suffix.lower(), "jpeg")


def write_attacked(x_adv: torch.Tensor, path: Path, quality: int) -> Path:
    """Write one attacked photo as a protected file: 8-bit, encoded in the format of `path`'s
    extension (:func:`output_format`) at `quality`, atomically, replacing an older file.

    Shape:
        - x_adv: :math:`(3, H, W)` in [0, 1].
    """
    write_atomic(path, encode_photo(to_uint8(x_adv), output_format(path.name), quality), overwrite=True)
    return path


def run_baseline(
    spec: BaselineSpec,
    model: nn.Module,
    originals: list[np.ndarray],
    labels: list[int],
    out_names: list[str],
    out_dir: Path,
    quality: int,
    device: torch.device,
    seed: int = 0,
) -> float:
    """Attack each original and write it as ``out_dir/out_name``; returns seconds per image.

    Args:
        spec: which attack and its budget.
        model: the attack model (RGB [0, 1] in, logits out).
        originals: (H, W, 3) uint8 photos.
        labels: the class each attack pushes away from (ground truth, else clean top-1).
        out_names: relative output names (same names as the protected run's files).
        out_dir: folder for this baseline's files (replaced file by file).
        quality: JPEG/WebP quality, as the protected run used.
        device: where to attack.
        seed: PGD's random start is seeded per photo, so results do not depend on batching.
    """
    # The JPEG in EOT-PGD's loss is the one the file will be written with (none for PNG...).
    attacks = {jpeg: baseline_attack(spec, model, device, quality if jpeg else None) for jpeg in (True, False)}
    started = time.perf_counter()
    for pixels, label, name in zip(originals, labels, out_names):
        attack = attacks[output_format(name) == "jpeg"]
        torch.manual_seed(seed)
        x = to_tensor(pixels)[None].to(device)  # (1, 3, H, W)
        y = torch.tensor([label], device=device)
        write_attacked(attack(x, y)[0], out_dir / name, quality)
    return (time.perf_counter() - started) / max(len(originals), 1)
