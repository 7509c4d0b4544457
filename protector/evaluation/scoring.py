"""Run a model over decoded photos of mixed sizes, batching photos that share a size."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from protector.batching import same_size_batches
from protector.images import to_tensor

Top = list[tuple[int, float]]  # (class index, probability), best first


@torch.no_grad()
def run_batched(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: list[np.ndarray],
    device: torch.device,
    batch_size: int = 16,
) -> list[torch.Tensor]:
    """Apply `fn` to every (H, W, 3) uint8 image at its own size; one CPU output row per image.

    Images of one shape share a batch (:func:`protector.batching.same_size_batches`).
    """
    out: list[torch.Tensor | None] = [None] * len(images)
    for chunk in same_size_batches(range(len(images)), lambda i: images[i].shape, batch_size, grouped=True):
        x = torch.stack([to_tensor(images[i]) for i in chunk]).to(device)  # (B, 3, H, W)
        for i, row in zip(chunk, fn(x).float().cpu()):
            out[i] = row
    return out  # type: ignore[return-value]


def top_k(model: nn.Module, images: list[np.ndarray], device: torch.device, k: int = 5, batch_size: int = 16) -> list[Top]:
    """Top-`k` classes and softmax probabilities of `model` on each photo, at full size.

    The photo goes in as decoded, only the model's own normalization applies (no resize,
    no crop), in float32, as the task organizers classify.
    """
    rows = run_batched(model, images, device, batch_size)
    tops = []
    for logits in rows:
        probs = torch.softmax(logits, dim=0)
        values, indices = probs.topk(min(k, probs.numel()))
        tops.append([(int(i), float(v)) for i, v in zip(indices, values)])
    return tops


def nima_mean_std(nima: nn.Module, images: list[np.ndarray], device: torch.device, batch_size: int = 16) -> list[tuple[float, float]]:
    """NIMA (mean, std) score of each photo; `nima` maps (B, 3, H, W) to (B, 10) probabilities."""
    from protector.nima import nima_scores

    rows = run_batched(nima, images, device, batch_size)
    if not rows:
        return []
    mean, std = nima_scores(torch.stack(rows))
    return [(float(m), float(s)) for m, s in zip(mean, std)]
