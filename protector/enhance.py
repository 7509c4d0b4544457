"""A photo edit predicted from a thumbnail: tone curves, saturation and sharpening.

The appeal stage of a protector: the photo a user publishes is the *enhanced* photo, and the
bounded perturbation is measured around it (:meth:`BoundedProtector.reference`). A small
network sees a thumbnail and predicts one edit for the whole photo, applied at full size:
three tone curves (R, G, B) looked up per pixel, optionally a saturation factor and an unsharp
mask, so a 12 MP photo costs one thumbnail pass plus per-pixel work, and the edit of a tiled
photo is the whole photo's (no seams). Curves and saturation are resolution-independent;
sharpening acts at the pixel scale (``sharpen_sigma`` pixels), as a photo editor's does.

Curves are monotone and keep black and white where they are (a curve runs from 0 to 1 in
non-negative steps), the edit of photo editors' "curves" tool; ``strength`` blends the whole
edit with the identity, so 0 returns the photo unchanged. ``max_shift`` bounds the curves the
same way: a blend of a monotone curve with the identity stays monotone, and no level moves by
more than that fraction of the range, however far training pushes the parameters (NIMA alone,
unbounded, drags a photo to 10 dB PSNR). With ``colour_shift`` the three curves are one
shared tone curve (bounded by ``max_shift``) plus per-channel curves bounded by
``colour_shift``: a convex blend of monotone curves, still monotone, and no channel further
than ``colour_shift`` from the shared curve (three free curves turned every photo green
under NIMA). Saturation and sharpening have their own bounds. Optimized per photo against
NIMA, each family adds to the gain on JPEG files (``bench/appeal_ceiling.py``); trained from a
thumbnail, they did not beat three curves (BENCHMARKS.md), which is what the appeal overlay
uses. The edited photo is rounded to 8-bit levels (straight-through in training), as the
photo a user publishes is: a budget of k/255 around it then holds exactly in the 8-bit file.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from protector.robust import quantize_8bit_ste

LUMA = torch.tensor([0.299, 0.587, 0.114])  # Rec. 601: what "saturation" blends towards


def curve_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Monotone curves from unconstrained parameters: softmax steps, cumulated from 0 to 1.

    Shape: (..., K) -> (..., K + 1), values at the knots 0, 1/K, ..., 1; equal logits give
    the identity.
    """
    steps = torch.softmax(logits.float(), dim=-1)
    return F.pad(steps.cumsum(dim=-1), (1, 0)).clamp(0.0, 1.0)


def apply_curves(x: torch.Tensor, curves: torch.Tensor) -> torch.Tensor:
    """Apply one piecewise-linear curve per image and channel to every pixel.

    Shape: x (B, C, H, W) in [0, 1], curves (B, C, K + 1) -> (B, C, H, W); differentiable
    in both.
    """
    batch, channels, height, width = x.shape
    if curves.shape[:2] != (batch, channels):
        raise ValueError(f"curves must be ({batch}, {channels}, K+1), got {tuple(curves.shape)}")
    knots = curves.shape[-1] - 1
    position = x.float().clamp(0.0, 1.0).reshape(batch, channels, -1) * knots
    index = position.floor().clamp(max=knots - 1)
    fraction = position - index
    index = index.long()
    low = curves.gather(-1, index)
    high = curves.gather(-1, index + 1)
    return (low + fraction * (high - low)).reshape(batch, channels, height, width)


def apply_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each pixel's colour away from (factor > 1) or towards its luma, per image.

    Shape: x (B, 3, H, W) in [0, 1], factor (B,) -> (B, 3, H, W) in [0, 1]; greys are kept.
    """
    luma = (x * LUMA.to(x.device).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return (luma + factor.view(-1, 1, 1, 1) * (x - luma)).clamp(0.0, 1.0)


def apply_sharpening(x: torch.Tensor, amount: torch.Tensor, sigma: float) -> torch.Tensor:
    """Unsharp mask: add ``amount`` times the detail above a Gaussian blur (negative softens).

    Shape: x (B, 3, H, W) in [0, 1], amount (B,) -> (B, 3, H, W) in [0, 1].
    """
    kernel = 2 * int(math.ceil(2 * sigma)) + 1
    blurred = gaussian_blur2d(x, (kernel, kernel), (sigma, sigma), border_type="reflect")
    return (x + amount.view(-1, 1, 1, 1) * (x - blurred)).clamp(0.0, 1.0)


class PhotoEdit(NamedTuple):
    """One photo's edit: curves (B, 3, knots + 1), saturation factors (B,), sharpening amounts (B,)."""

    curves: torch.Tensor
    saturation: torch.Tensor
    sharpening: torch.Tensor


class ToneCurveEnhancer(nn.Module):
    r"""Predict a photo's edit from a thumbnail and apply it at full size.

    A few strided convolutions over a ``thumbnail`` x ``thumbnail`` copy of the photo, global
    average pooling, and a linear layer to ``3 * knots`` curve parameters
    (:func:`curve_from_logits`), plus one saturation parameter when ``saturation`` > 0 and one
    sharpening parameter when ``sharpen`` > 0. The last layer starts at zero: an untrained
    enhancer is the identity.

    Args:
        knots: segments of each piecewise-linear curve. Default: 16.
        thumbnail: side of the thumbnail the edit is predicted from. Default: 64.
        width: channels of the first convolution (doubling twice). Default: 16.
        strength: blend of the predicted curves with the identity, in [0, 1]; can be changed
            after training (``protect --enhance-strength``). Default: 1.
        max_shift: the most any level may move, as a fraction of the range, in (0, 1]
            (0.1: 25 of 255 levels); a fixed part of the trained edit. Default: 1 (unbounded).
        colour_shift: None: three independent curves, each within ``max_shift``. A number:
            one shared tone curve within ``max_shift``, plus per-channel curves within this
            much more (``max_shift + colour_shift <= 1``). Default: None.
        saturation: the most the global saturation may change, as a factor: 0.25 lets it range
            over [0.75, 1.25] (colours blended away from / towards each pixel's luma). Default:
            0 (no saturation change).
        sharpen: the most an unsharp mask may add (or, negative, take away) of the detail
            above a Gaussian blur: 0.5 lets the amount range over [-0.5, 0.5]. Default: 0
            (no sharpening).
        sharpen_sigma: the blur's standard deviation in pixels. Default: 1.

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1], any size; Output: the same, float32, in [0, 1],
          on the 8-bit grid.

    Example::
        >>> enhancer = ToneCurveEnhancer()
        >>> x = torch.randint(0, 256, (2, 3, 37, 50)) / 255  # an 8-bit photo
        >>> torch.equal(enhancer(x), x)  # untrained: the identity
        True
    """

    def __init__(
        self,
        knots: int = 16,
        thumbnail: int = 64,
        width: int = 16,
        strength: float = 1.0,
        max_shift: float = 1.0,
        colour_shift: float | None = None,
        saturation: float = 0.0,
        sharpen: float = 0.0,
        sharpen_sigma: float = 1.0,
    ) -> None:
        super().__init__()
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        if thumbnail < 16:
            raise ValueError(f"thumbnail must be >= 16 pixels, got {thumbnail}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        if not 0.0 < max_shift <= 1.0:
            raise ValueError(f"max_shift must be in (0, 1], got {max_shift}")
        if colour_shift is not None and not (0.0 <= colour_shift and max_shift + colour_shift <= 1.0):
            raise ValueError(f"colour_shift must be >= 0 with max_shift + colour_shift <= 1, got {colour_shift}")
        if not 0.0 <= saturation < 1.0:
            raise ValueError(f"saturation must be in [0, 1), got {saturation}")
        if not 0.0 <= sharpen <= 2.0:
            raise ValueError(f"sharpen must be in [0, 2], got {sharpen}")
        if sharpen_sigma <= 0:
            raise ValueError(f"sharpen_sigma must be > 0, got {sharpen_sigma}")
        self.config = {"knots": knots, "thumbnail": thumbnail, "width": width, "max_shift": max_shift,
                       "colour_shift": colour_shift, "saturation": saturation, "sharpen": sharpen,
                       "sharpen_sigma": sharpen_sigma}
        self.max_shift = float(max_shift)
        self.colour_shift = colour_shift
        self.curve_params = (4 if colour_shift is not None else 3) * knots  # shared curve first
        self.saturation = float(saturation)
        self.sharpen = float(sharpen)
        self.sharpen_sigma = float(sharpen_sigma)
        self.knots = knots
        self.thumbnail = thumbnail
        self.strength = strength
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, self.curve_params + (saturation > 0) + (sharpen > 0))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def strength(self) -> float:
        return self._strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {value}")
        self._strength = value

    def edit(self, x: torch.Tensor) -> PhotoEdit:
        """The edit for ``x`` at the current strength."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        # Antialiased: the edit must not depend on which pixels a plain subsample hits.
        small = F.interpolate(x.float(), size=(self.thumbnail, self.thumbnail), mode="bilinear",
                              antialias=True, align_corners=False)
        params = self.head(self.features(small * 2 - 1))
        steps = curve_from_logits(params[:, : self.curve_params].view(-1, self.curve_params // self.knots, self.knots))
        identity = torch.linspace(0.0, 1.0, self.knots + 1, device=x.device)
        if self.colour_shift is None:
            move = self.max_shift * (steps - identity)
        else:  # one tone curve for all channels, each channel a little apart from it
            move = self.max_shift * (steps[:, :1] - identity) + self.colour_shift * (steps[:, 1:] - identity)
        curves = identity + self.strength * move
        # tanh: bounded, the identity at zero, and a gradient there.
        extra = torch.tanh(params[:, self.curve_params :])  # (B, 0..2): saturation, then sharpening
        saturation = torch.ones(x.shape[0], device=x.device)
        if self.saturation:
            saturation = saturation + self.strength * self.saturation * extra[:, 0]
        sharpening = torch.zeros(x.shape[0], device=x.device)
        if self.sharpen:
            sharpening = sharpening + self.strength * self.sharpen * extra[:, -1]
        return PhotoEdit(curves, saturation, sharpening)

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """The curves for ``x`` at the current strength, (B, 3, knots + 1)."""
        return self.edit(x).curves

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strength == 0.0:
            return x.float()
        edit = self.edit(x)
        y = apply_curves(x, edit.curves)
        if self.saturation:
            y = apply_saturation(y, edit.saturation)
        if self.sharpen:
            y = apply_sharpening(y, edit.sharpening, self.sharpen_sigma)
        return quantize_8bit_ste(y)

    def extra_repr(self) -> str:
        return (f"knots={self.knots}, thumbnail={self.thumbnail}, strength={self.strength:g}, "
                f"max_shift={self.max_shift:g}, colour_shift={self.colour_shift}, saturation={self.saturation:g}, "
                f"sharpen={self.sharpen:g}")


__all__ = ["PhotoEdit", "ToneCurveEnhancer", "apply_curves", "apply_saturation", "apply_sharpening", "curve_from_logits"]
