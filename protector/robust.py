"""Differentiable stand-ins for what happens to a protected photo on its way to disk.

Used only in training, so that the perturbation survives 8-bit rounding, JPEG and mild
resizing: the classifier sees ``Robustifier(x_adv)`` and the gradient flows back through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from torch import nn

from protector.settings import check_quality

if TYPE_CHECKING:
    from protector.views import View, ViewSampler


def quantize_8bit_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the 256 levels of an 8-bit file, with a straight-through (identity) gradient.

    Shape: any; values in [0, 1].
    """
    return x + (torch.round(x * 255.0) / 255.0 - x).detach()


def differentiable_jpeg(x: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """kornia's differentiable JPEG round trip at any image size.

    JPEG codes 16x16 macroblocks (8x8 DCT on 2x-subsampled chroma) and kornia only accepts
    multiples of 16, so the image is padded bottom/right by replication, as libjpeg does,
    and cropped back.

    Args:
        x: images in [0, 1].
        quality: one JPEG quality (1..100) for all, or one per image (B,).

    Shape: (B, 3, H, W) -> the same, float32 (may overshoot [0, 1] slightly).
    """
    if not torch.is_tensor(quality):
        quality = torch.full((x.shape[0],), float(quality), device=x.device)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % 16, -width % 16
    padded = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x
    return jpeg_codec_differentiable(padded, quality.float())[..., :height, :width]


class Robustifier(nn.Module):
    r"""Random, differentiable "save to disk" transforms applied to protected images.

    Per image, in the order a real pipeline applies them: with probability ``resize_prob``
    downscale by a random factor in ``resize_range`` and upscale back (antialiased bilinear);
    8-bit rounding; with probability ``jpeg_prob`` a differentiable JPEG round trip
    (kornia, quality drawn uniformly from ``jpeg_quality``); 8-bit rounding again (the
    decoded file is 8-bit). Rounding uses a straight-through gradient.

    Args:
        jpeg_quality: inclusive range of JPEG qualities (1..100). Default: (70, 95).
        jpeg_prob: probability of the JPEG round trip per image. Default: 0.8.
        resize_prob: probability of the down-up resize per image. Default: 0.0.
        resize_range: range of the downscale factor, within (0, 1]. Default: (0.75, 1.0).
        quantize: apply 8-bit rounding. Default: True.
        views: draw the view a classifier sees the file through from this sampler, one per
            batch; None: the file as it is. Default: None.

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1], any H, W; Output: the same (the view's size
          with ``views``), float32.

    Example::
        >>> robust = Robustifier(jpeg_quality=(80, 90), jpeg_prob=1.0)
        >>> robust(torch.rand(2, 3, 40, 40, requires_grad=True)).shape
        torch.Size([2, 3, 40, 40])
    """

    def __init__(
        self,
        jpeg_quality: tuple[int, int] = (70, 95),
        jpeg_prob: float = 0.8,
        resize_prob: float = 0.0,
        resize_range: tuple[float, float] = (0.75, 1.0),
        quantize: bool = True,
        views: ViewSampler | None = None,
    ) -> None:
        super().__init__()
        low_q, high_q = (int(q) for q in jpeg_quality)
        if not 1 <= low_q <= high_q <= 100:
            raise ValueError(f"jpeg_quality must be (low, high) with 1 <= low <= high <= 100, got {jpeg_quality}")
        low_s, high_s = (float(s) for s in resize_range)
        if not 0 < low_s <= high_s <= 1:
            raise ValueError(f"resize_range must be (low, high) with 0 < low <= high <= 1, got {resize_range}")
        for name, p in (("jpeg_prob", jpeg_prob), ("resize_prob", resize_prob)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        self.jpeg_quality = (low_q, high_q)
        self.jpeg_prob = float(jpeg_prob)
        self.resize_prob = float(resize_prob)
        self.resize_range = (low_s, high_s)
        self.quantize = quantize
        self.views = views

    def draw_view(self) -> View | None:
        """The view for one batch from ``views`` (the global RNG: seeded by the training's
        seed_everything); None without views. Drawn apart from :meth:`forward` so the caller
        can label the clean photo under the same view."""
        return self.views.sample() if self.views is not None else None

    def forward(self, x: torch.Tensor, view: View | None = None) -> torch.Tensor:
        """The file's pixels as a classifier gets them: JPEG and 8-bit rounding as the written
        file, then ``view`` (a drawn one when ``views`` is set and no view is given)."""
        # The codec and the rounding must see float32 (bf16 cannot even represent 8-bit levels).
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            x = self._apply_to_some(x, self.resize_prob, self._resize_down_up)
            if self.quantize:
                x = quantize_8bit_ste(x)
            x = self._apply_to_some(x, self.jpeg_prob, self._jpeg)
            if self.quantize:
                x = quantize_8bit_ste(x)
            if view is None:
                view = self.draw_view()
            if view is not None:
                x = view(x)
        return x

    @staticmethod
    def _apply_to_some(x: torch.Tensor, prob: float, transform) -> torch.Tensor:
        if prob <= 0:
            return x
        chosen = torch.rand(x.shape[0], device=x.device) < prob
        if not bool(chosen.any()):
            return x
        if bool(chosen.all()):
            return transform(x)
        # Out-of-place index_put keeps the graph intact for both the chosen and the others.
        return x.index_put((chosen,), transform(x[chosen]))

    def _jpeg(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.jpeg_quality
        quality = torch.randint(low, high + 1, (x.shape[0],), device=x.device).float()
        return differentiable_jpeg(x, quality).clamp(0.0, 1.0)  # the codec can overshoot [0, 1] slightly

    def _resize_down_up(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.resize_range
        scale = low + (high - low) * float(torch.rand(()))
        height, width = x.shape[-2:]
        small = (max(1, round(height * scale)), max(1, round(width * scale)))
        if small == (height, width):
            return x
        from protector.views import resize  # the one resize (views imports this module's codec)

        return resize(resize(x, small), (height, width)).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        return (
            f"jpeg_quality={self.jpeg_quality}, jpeg_prob={self.jpeg_prob}, resize_prob={self.resize_prob}, "
            f"resize_range={self.resize_range}, quantize={self.quantize}, views={self.views}"
        )
