"""The appeal stage's objective: how much NIMA likes an edit, and what keeps it a photo edit.

Trains :class:`protector.enhance.ToneCurveEnhancer` (``model.appeal`` in
``configs/overlays/appeal.yaml``); the attack losses and fidelity terms are in
:mod:`protector.losses`.
"""

from __future__ import annotations

import torch
from torch import nn

from protector.robust import differentiable_jpeg
from protector.settings import check_quality


class NimaAppeal(nn.Module):
    r"""Appeal of an edit: minus its NIMA mean score, plus penalties that keep it a photo edit.

    The edited photo goes through the project's NIMA port (:mod:`protector.nima`, frozen,
    its preprocessing differentiable). The naturalness terms penalize a tint: the part of
    the shift of the channel means that differs between channels, squared, in units of 10
    8-bit levels (one channel 10 levels off the others costs about 1); and, with
    ``edit_weight``, the edit's size: its mean squared change per pixel in the same units
    (about 1.2 at 27.5 dB PSNR). A tone edit may brighten or add contrast, but should not
    colour the photo, and NIMA alone keeps darkening and steepening it: on the stand-in's
    photos the curves went from 23.5 to 20.1 dB PSNR between 100 and 400 steps at a
    constant rate, where ``edit_weight`` 0.05 held them at 32.7 dB
    (``bench/enhancer_stability.py``).

    Args:
        weights: NIMA weights file (``weights_mobilenet_aesthetic_0.07.hdf5``).
        weight: weight of the NIMA term (per NIMA point).
        colour_weight: weight of the colour-cast penalty.
        edit_weight: weight of the edit-size penalty (0: none).
        preprocess: NIMA's preprocessing (``"idealo"``: 224 x 224 nearest, or ``"native"``).
        jpeg_quality: score the edit as published: through a differentiable JPEG at this
            quality (:func:`~protector.robust.differentiable_jpeg`). None: as it is. Per photo,
            the best unbounded curves gained +0.48 NIMA as PNG but +0.26 as JPEG q90
            (``bench/appeal_ceiling.py``): part of what NIMA rewards does not survive JPEG.

    Shape:
        - edited, photo: :math:`(B, 3, H, W)` in [0, 1]; output: (scalar loss, (B,) NIMA means).
    """

    def __init__(
        self,
        weights: str,
        weight: float = 1.0,
        colour_weight: float = 1.0,
        preprocess: str = "idealo",
        jpeg_quality: int | None = None,
        edit_weight: float = 0.0,
    ):
        super().__init__()
        from protector.nima import load_nima  # h5py and the port load only when appeal is trained

        if min(weight, colour_weight, edit_weight) < 0:
            raise ValueError(f"weights must be >= 0, got weight={weight}, colour_weight={colour_weight}, "
                             f"edit_weight={edit_weight}")
        self.nima = load_nima(weights, preprocess=preprocess)
        if jpeg_quality is not None:
            check_quality(jpeg_quality, "jpeg_quality (or None)")
        self.weight = float(weight)
        self.colour_weight = float(colour_weight)
        self.edit_weight = float(edit_weight)
        self.jpeg_quality = jpeg_quality

    def train(self, mode: bool = True) -> NimaAppeal:
        super().train(mode)
        self.nima.eval()  # frozen: BatchNorm statistics never move
        return self

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """NIMA mean score per photo, (B,)."""
        from protector.nima import nima_scores

        return nima_scores(self.nima(x.float()))[0]

    def forward(self, edited: torch.Tensor, photo: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        published = edited if self.jpeg_quality is None else differentiable_jpeg(edited, self.jpeg_quality).clamp(0, 1)
        scores = self.scores(published)
        change = (edited.float() - photo.float()) * 25.5  # in units of 10 levels
        shift = change.mean(dim=(2, 3))  # (B, 3)
        cast = (shift - shift.mean(dim=1, keepdim=True)).pow(2).sum(dim=1)
        loss = -self.weight * scores.mean() + self.colour_weight * cast.mean()
        if self.edit_weight:
            loss = loss + self.edit_weight * change.pow(2).mean()
        return loss, scores.detach()
