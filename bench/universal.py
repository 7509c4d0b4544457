"""A universal adversarial perturbation: ONE pattern for every photo, the generator's floor.

A generator that does not beat this has learned nothing image-specific. The pattern is
trained on the same training photos, with the same loss as the pure generator of
`configs/standin.yaml` (CDA's relativistic cross-entropy against the clean window's logits)
and through the same random differentiable JPEG (`protector.robust.Robustifier`), on the
same 128 px training windows (the window of the pattern at the photo's window position, so
the pattern is learned at full size). Adam on the pattern, projected onto the L-inf ball.
Trained and cached by `bench/protection_table.py`.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from protector.losses import untargeted_ce_loss
from protector.robust import Robustifier


def apply_universal(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Add the pattern (resized when the photo has another size) and clamp to [0, 1]."""
    if delta.shape[-2:] != x.shape[-2:]:
        delta = F.interpolate(delta[None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0]
    return (x + delta).clamp(0, 1)


def train_universal(
    classifier: torch.nn.Module,
    photos: torch.Tensor,  # (N, 3, H, W) uint8
    labels: torch.Tensor,
    eps: float,
    steps: int = 600,
    batch_size: int = 16,
    window: int = 128,
    lr_fraction: float = 0.1,
    seed: int = 0,
    log_every: int = 100,
) -> torch.Tensor:
    """Train one (3, H, W) pattern within ``eps`` on uint8 ``photos`` with their clean labels (N,)."""
    generator = torch.Generator().manual_seed(seed)
    robustifier = Robustifier(jpeg_quality=(70, 95), jpeg_prob=0.5)
    height, width = photos.shape[-2:]
    delta = torch.zeros(3, height, width, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=lr_fraction * eps)
    started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine decay to zero
            group["lr"] = lr_fraction * eps * 0.5 * (1 + math.cos(math.pi * step / steps))
        index = torch.randint(0, len(photos), (batch_size,), generator=generator)
        top = int(torch.randint(0, height - window + 1, (), generator=generator))
        left = int(torch.randint(0, width - window + 1, (), generator=generator))
        x = photos[index, :, top : top + window, left : left + window].float() / 255
        patch = delta[:, top : top + window, left : left + window]
        flip = bool(torch.randint(0, 2, (), generator=generator))  # the generator's photos are flipped too
        if flip:
            x = x.flip(-1)
        x_adv = (x + (patch.flip(-1) if flip else patch)).clamp(0, 1)
        with torch.no_grad():
            clean_logits = classifier(x)
        loss = untargeted_ce_loss(classifier(robustifier(x_adv)), labels[index], clean_logits)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            delta.clamp_(-eps, eps)
        if log_every and (step + 1) % log_every == 0:
            print(f"universal eps {eps * 255:.3g}/255 step {step + 1}/{steps} loss {loss.item():.3f} "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    return delta.detach()
