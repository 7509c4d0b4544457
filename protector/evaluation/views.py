"""Protection under each view: is the protected file still read as its scene once it is resized,
cropped or re-encoded by a platform (:mod:`protector.views`)?

For every photo and view the classifier sees, as it really would (PIL's resize, a real JPEG):
the original, the original re-saved as JPEG (the control: what re-encoding alone changes), and
the protected file. "Changed" is against the original's prediction under the same view: top-1
changed, and the original's top-1 no longer among the protected file's top 5.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from protector.evaluation.scoring import top_k
from protector.views import View, render_view


@dataclass(frozen=True)
class ViewScore:
    """One view over all photos: fractions in [0, 1] of ``photos``."""

    view: str
    photos: int
    top1_changed: float
    top5_changed: float
    control_top1_changed: float

    def as_dict(self) -> dict:
        return {"view": self.view, "photos": self.photos, "top1_changed": self.top1_changed,
                "top5_changed": self.top5_changed, "control_top1_changed": self.control_top1_changed}


def jpeg_round_trip(pixels: np.ndarray, quality: int) -> np.ndarray:
    """The photo saved as JPEG at ``quality`` and decoded again (the control's file)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def score_views(
    model: nn.Module,
    originals: Sequence[np.ndarray],
    protected: Sequence[np.ndarray],
    views: Sequence[View],
    device: torch.device,
    control_quality: int = 90,
    batch_size: int = 16,
) -> list[ViewScore]:
    """Top-1/top-5 changed under each view, with the JPEG control; (H, W, 3) uint8 photos, paired by position."""
    if len(originals) != len(protected):
        raise ValueError(f"{len(originals)} originals but {len(protected)} protected photos")
    controls = [jpeg_round_trip(pixels, control_quality) for pixels in originals]
    scores = []
    for view in views:
        clean = top_k(model, [render_view(p, view) for p in originals], device, 5, batch_size)
        control = top_k(model, [render_view(p, view) for p in controls], device, 5, batch_size)
        adv = top_k(model, [render_view(p, view) for p in protected], device, 5, batch_size)
        count = len(originals)
        clean_top1 = [row[0][0] for row in clean]
        scores.append(ViewScore(
            view=view.name,
            photos=count,
            top1_changed=_mean(a[0][0] != c for a, c in zip(adv, clean_top1)),
            top5_changed=_mean(c not in {i for i, _ in a} for a, c in zip(adv, clean_top1)),
            control_top1_changed=_mean(k[0][0] != c for k, c in zip(control, clean_top1)),
        ))
    return scores


def _mean(flags) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else float("nan")
