"""Optional refinement of the generator's output with a few white-box gradient steps.

The generator protects in one forward pass. Where the attack model is at hand and a few
more passes are affordable (a GPU, or a handful of photos on a CPU), `refine` starts from
the generator's photo and takes projected gradient steps on an attack loss (by default the
top-5 margin of the shipped configs),
through a differentiable JPEG at the quality the file will be saved with, staying inside
the same L-inf ball around the clean photo.

Written here rather than taken from torchattacks: its PGD starts only from the clean
photo or a random point, and uses cross-entropy without the JPEG in the loop.
"""

from __future__ import annotations

import torch
from torch import nn

from protector.generator import project_to_budget
from protector.losses import AttackLoss, TopKMargin
from protector.robust import differentiable_jpeg


def refine(
    x_clean: torch.Tensor,
    x_init: torch.Tensor,
    classifier: nn.Module,
    y: torch.Tensor,
    eps: float,
    steps: int = 2,
    step_size: float | None = None,
    loss: AttackLoss | None = None,
    jpeg_quality: int | None = 90,
) -> torch.Tensor:
    """Projected gradient steps from `x_init`, kept within `eps` of `x_clean` (L-inf).

    Args:
        x_clean: the photos the budget is measured from, in [0, 1]: the protector's
            :meth:`~protector.generator.BoundedProtector.reference` (the clean photos).
        x_init: the generator's protected photos, within `eps` of `x_clean`.
        classifier: frozen model, RGB [0, 1] in, logits out.
        y: (B,) labels to push out of the top-k (the clean prediction for unlabelled photos).
        eps: budget as a fraction of the [0, 1] range.
        steps: gradient steps; 0 returns `x_init` unchanged.
        step_size: per-step size; default eps / 2.
        loss: what the steps descend; default ``TopKMargin(k=5, kappa=2.0)``: push the label
            out of the top 5 until it is 2 logits below the 5th other class, a margin that
            survives JPEG. ``SensitiveSafe`` pushes every sensitive class out as well. A loss
            that needs the clean logits gets them at ``x_clean``.
        jpeg_quality: quality of the differentiable JPEG in the loop (None: no JPEG).

    Shape:
        x_clean, x_init: (B, 3, H, W); y: (B,); output: (B, 3, H, W) float32.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    step_size = eps / 2 if step_size is None else step_size
    loss = TopKMargin(k=5, kappa=2.0) if loss is None else loss
    x_clean = x_clean.detach().float()
    x_adv = x_init.detach().float().clone()
    clean_logits = None
    if loss.needs_clean_logits and steps:
        with torch.no_grad():
            clean_logits = classifier(x_clean)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            seen = x_adv if jpeg_quality is None else differentiable_jpeg(x_adv, jpeg_quality)
            (grad,) = torch.autograd.grad(loss(classifier(seen), y, clean_logits), x_adv)
        with torch.no_grad():
            # The loss is a margin of the label (or of the avoided classes): descending it pushes them out.
            x_adv = x_adv - step_size * grad.sign()
            x_adv = project_to_budget(x_adv, x_clean, eps)
    return x_adv.detach()
