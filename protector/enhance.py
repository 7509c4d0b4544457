"""A global photo edit, predicted from a thumbnail: per-channel monotone tone curves.

The appeal stage of a protector: the photo a user publishes is the *enhanced* photo, and the
bounded perturbation is measured around it (:meth:`BoundedProtector.reference`). The edit is
global and resolution-independent: a small network sees a thumbnail and predicts three tone
curves (R, G, B), which are then applied to every pixel of the full-size photo, so a 12 MP
photo costs one thumbnail pass plus a per-pixel lookup, and tiling cannot make seams.

Curves are monotone and keep black and white where they are (a curve runs from 0 to 1 in
non-negative steps), the edit of photo editors' "curves" tool; ``strength`` blends each curve
with the identity, so 0 returns the photo unchanged. The edited photo is rounded to 8-bit
levels (straight-through in training), as the photo a user publishes is: a budget of k/255
around it then holds exactly in the 8-bit file.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from protector.robust import quantize_8bit_ste


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


class ToneCurveEnhancer(nn.Module):
    r"""Predict a global tone edit from a thumbnail and apply it at full size.

    A few strided convolutions over a ``thumbnail`` x ``thumbnail`` copy of the photo, global
    average pooling, and a linear layer to ``3 * knots`` curve parameters
    (:func:`curve_from_logits`). The last layer starts at zero: an untrained enhancer is the
    identity.

    Args:
        knots: segments of each piecewise-linear curve. Default: 16.
        thumbnail: side of the thumbnail the edit is predicted from. Default: 64.
        width: channels of the first convolution (doubling twice). Default: 16.
        strength: blend of the predicted curves with the identity, in [0, 1]; can be changed
            after training (``protect --enhance-strength``). Default: 1.

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1], any size; Output: the same, float32, in [0, 1],
          on the 8-bit grid.

    Example::
        >>> enhancer = ToneCurveEnhancer()
        >>> x = torch.randint(0, 256, (2, 3, 37, 50)) / 255  # an 8-bit photo
        >>> torch.equal(enhancer(x), x)  # untrained: the identity
        True
    """

    def __init__(self, knots: int = 16, thumbnail: int = 64, width: int = 16, strength: float = 1.0) -> None:
        super().__init__()
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        if thumbnail < 16:
            raise ValueError(f"thumbnail must be >= 16 pixels, got {thumbnail}")
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.config = {"knots": knots, "thumbnail": thumbnail, "width": width}
        self.knots = knots
        self.thumbnail = thumbnail
        self.strength = strength
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(channels, 3 * knots)
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

    def curves(self, x: torch.Tensor) -> torch.Tensor:
        """The curves for ``x`` at the current strength, (B, 3, knots + 1)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
        # Antialiased: the edit must not depend on which pixels a plain subsample hits.
        small = F.interpolate(x.float(), size=(self.thumbnail, self.thumbnail), mode="bilinear",
                              antialias=True, align_corners=False)
        logits = self.head(self.features(small * 2 - 1)).view(-1, 3, self.knots)
        identity = torch.linspace(0.0, 1.0, self.knots + 1, device=x.device)
        return identity + self.strength * (curve_from_logits(logits) - identity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strength == 0.0:
            return x.float()
        return quantize_8bit_ste(apply_curves(x, self.curves(x)))

    def extra_repr(self) -> str:
        return f"knots={self.knots}, thumbnail={self.thumbnail}, strength={self.strength:g}"


__all__ = ["ToneCurveEnhancer", "apply_curves", "curve_from_logits"]
