"""Gradient guidance: the attack model's own gradient, given to the generator as an input.

A generator that sees only the photo must learn, from a few thousand photos, what the
attack model's backward pass computes; on a CPU budget it learns little more than a
universal pattern (BENCHMARKS.md: 6.9% top-1 fooled at 2/255). Given the gradient of the
attack model's loss at the clean photo, it starts where FGSM ends and learns the rest: which
directions survive JPEG, how to push the label out of the top 5. The price is one forward
and one backward pass of the attack model per photo, which must therefore be at hand when
protecting (it is: the threat model is white-box).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from protector.robust import differentiable_jpeg
from protector.views import View

# Standard deviations kept before the clamp: a few pixels with huge gradients must not
# flatten the rest of the map to zero.
_CLAMP_STD = 3.0


def attack_gradient(
    classifier: nn.Module,
    x: torch.Tensor,
    label: torch.Tensor | None = None,
    jpeg_quality: int | None = None,
) -> torch.Tensor:
    r"""Normalized gradient of the cross-entropy of the clean prediction, the generator's guide.

    The label is the classifier's own prediction on ``x`` unless given (protection needs no
    label; a second query at the generator's own output passes the clean prediction). Each
    image's gradient is divided by its standard deviation and clamped to 3 of them, then
    scaled to [-1, 1]: the guide carries a direction, not the classifier's confidence.
    Works inside ``torch.no_grad`` and ``torch.inference_mode`` (Lightning validates and
    predicts under the latter): it turns autograd on for itself.

    Args:
        classifier: frozen model, RGB [0, 1] in, logits out.
        x: photos in [0, 1].
        label: (B,) class to move away from; default: the prediction on ``x``.
        jpeg_quality: take the gradient through a differentiable JPEG at this quality
            (1..100), i.e. of the classifier as it will see the saved file; None: no JPEG.

    Shape:
        - x: :math:`(B, 3, H, W)`; output: the same, float32 in [-1, 1].
    """
    return gradient_and_label(classifier, x, label, jpeg_quality)[0]


@torch.no_grad()
def predicted_label(classifier: nn.Module, x: torch.Tensor, jpeg_quality: int | None = None) -> torch.Tensor:
    """The label :func:`gradient_and_label` would use for ``x`` (its top-1, through the same
    JPEG), without the gradient, (B,) int64."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        seen = x if jpeg_quality is None else differentiable_jpeg(x, jpeg_quality)
        return classifier(seen).argmax(dim=1)


def gradient_and_label(
    classifier: nn.Module,
    x: torch.Tensor,
    label: torch.Tensor | None = None,
    jpeg_quality: int | None = None,
    shorter_sides: Sequence[int] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attack_gradient` and the label it used, (B,) int64.

    With ``shorter_sides`` the gradient is taken over views: the photo with its shorter side
    resized to each size (a classifier's resize, :class:`protector.views.View`), each view
    moving away from its own clean prediction (or from ``label`` when given), each view's
    gradient scaled to the same size before they are summed; the label returned is the first
    view's. A guide made at one scale averages away when the photo is shrunk (BENCHMARKS.md,
    "Let learning pay"); this one carries what the small views need.
    """
    views = [View(f"short-{side}", shorter_side=side) for side in shorter_sides] or [None]
    # A clone made outside inference mode is an ordinary tensor that autograd can track.
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        x = x.detach().float().clone().requires_grad_(True)
        total, first_label = torch.zeros_like(x), None
        for view in views:
            seen = x if jpeg_quality is None else differentiable_jpeg(x, jpeg_quality)
            logits = classifier(seen if view is None else view(seen))
            view_label = logits.argmax(dim=1).detach() if label is None else label.detach().clone()
            first_label = view_label if first_label is None else first_label
            # Summed, so one image's gradient does not depend on the batch size.
            loss = F.cross_entropy(logits.float(), view_label, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
            total += grad / _per_image_std(grad)
        return (total / _per_image_std(total)).clamp(-_CLAMP_STD, _CLAMP_STD) / _CLAMP_STD, first_label


def _per_image_std(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).std(dim=1).clamp_min(1e-12)[:, None, None, None]
