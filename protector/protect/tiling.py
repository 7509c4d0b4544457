"""Protect very large photos in overlapping tiles, blended, so memory stays bounded.

A 12-megapixel photo through a U-Net at full resolution needs several GiB of
activations; cut into tiles it needs those of one tile. Tiles overlap by `overlap`
pixels and are blended with linear ramps across the overlap, so no seam shows. Tile
origins are multiples of `align` (the generator's total stride), so every tile sees
the same stride phase as the whole image: away from the overlaps the tiled output
equals the untiled one up to float rounding, as far as the generator's receptive field
stays inside its tile. The protector's reference photo (the one its budget is measured
from, e.g. the photo after a global enhancement) is computed on the whole photo, never per
tile, so a global edit cannot differ between tiles; only the perturbation is tiled. Blending
is a convex combination, so the blended output stays within the budget around the
reference, and in [0, 1].
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from protector.protector_protocol import Protector, require_protector


def tile_spans(length: int, tile: int, overlap: int, align: int) -> list[tuple[int, int]]:
    """(start, stop) spans that cover ``range(length)``, each about `tile` long.

    Starts are multiples of `align`; neighbours overlap by at least `overlap`; the last
    span runs to the end and may be up to ``align - 1`` longer than `tile`.

    Example:
        >>> tile_spans(300, 128, 32, 32)
        [(0, 128), (96, 224), (160, 300)]
    """
    if tile < 1 or align < 1 or overlap < 0:
        raise ValueError(f"need tile >= 1, align >= 1, overlap >= 0; got tile={tile}, align={align}, overlap={overlap}")
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    if length <= tile:
        return [(0, length)]
    step = max(align, (tile - overlap) // align * align)
    starts = []
    start = 0
    while start + tile < length:
        starts.append(start)
        start += step
    last = max(0, (length - tile) // align * align)
    if starts and starts[-1] >= last:
        starts.pop()
    return [(s, s + tile) for s in starts] + [(last, length)]


def _ramp(length: int, overlap: int, ramp_start: bool, ramp_stop: bool) -> torch.Tensor:
    """1-D blending weights: linear from ~0 to 1 over `overlap` pixels at inner edges."""
    weight = torch.ones(length, dtype=torch.float32)
    if overlap > 0:
        rising = (torch.arange(min(overlap, length), dtype=torch.float32) + 0.5) / overlap
        if ramp_start:
            weight[: rising.numel()] = torch.minimum(weight[: rising.numel()], rising)
        if ramp_stop:
            weight[length - rising.numel() :] = torch.minimum(weight[length - rising.numel() :], rising.flip(0))
    return weight


def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    tile: int = 1024,
    overlap: int = 128,
    align: int = 64,
) -> torch.Tensor:
    """Apply an image-to-image `fn` tile by tile and blend the tiles.

    Args:
        fn: maps (B, C, h, w) to (B, C, h, w) for any h, w.
        x: (B, C, H, W) input.
        tile: tile side in pixels.
        overlap: overlap between neighbouring tiles in pixels (the blending width).
        align: tile origins are multiples of this (the network's total stride).

    Returns:
        (B, C, H, W) float32 on `x`'s device.
    """
    height, width = x.shape[-2:]
    rows = tile_spans(height, tile, overlap, align)
    cols = tile_spans(width, tile, overlap, align)
    if len(rows) == 1 and len(cols) == 1:
        return fn(x).float()
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    total = torch.zeros((height, width), dtype=torch.float32, device=x.device)
    for i, (top, bottom) in enumerate(rows):
        row_w = _ramp(bottom - top, overlap, i > 0, i < len(rows) - 1)
        for j, (left, right) in enumerate(cols):
            col_w = _ramp(right - left, overlap, j > 0, j < len(cols) - 1)
            weight = (row_w[:, None] * col_w[None, :]).to(x.device)  # (h, w)
            piece = fn(x[..., top:bottom, left:right]).float()
            out[..., top:bottom, left:right] += piece * weight
            total[top:bottom, left:right] += weight
    return out / total


class TiledProtector(nn.Module):
    """Runs a protector whole on ordinary photos and in blended tiles on very large ones.

    A :class:`~protector.protector_protocol.Protector` itself: the budget, the guide's model
    and the enhancer are those of the protector it tiles (the reference and the scene label
    are computed on the whole photo, only the perturbation is tiled).

    Args:
        protector: the :class:`~protector.protector_protocol.Protector` to run, e.g. a
            :class:`~protector.generator.BoundedProtector`.
        max_pixels: photos with more than this many pixels (H * W) are tiled.
            Default: 4,194,304 (4 MP, e.g. 2048 x 2048).
        tile: tile side in pixels. Default: 1024.
        overlap: overlap of neighbouring tiles in pixels. Default: 128.
        align: tile origins are multiples of this; use the generator's total stride.
            Default: 64 (enough for a U-Net of depth up to 6).

    Shape:
        - Input: (B, 3, H, W) in [0, 1]; Output: (B, 3, H, W) float32.

    Example:
        >>> from protector.generator import default_protector
        >>> tiled = TiledProtector(default_protector(), max_pixels=64 * 64, tile=48, overlap=16, align=8)
        >>> x = torch.rand(1, 3, 100, 90)
        >>> torch.allclose(tiled(x), x)  # the default protector's generator adds nothing
        True
    """

    def __init__(
        self,
        protector: Protector,
        max_pixels: int = 4 * 1024 * 1024,
        tile: int = 1024,
        overlap: int = 128,
        align: int = 64,
    ) -> None:
        super().__init__()
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        tile_spans(tile + 1, tile, overlap, align)  # validates the tile settings
        self.protector = require_protector(protector)
        self.max_pixels = max_pixels
        self.tile = tile
        self.overlap = overlap
        self.align = align

    @property
    def eps(self) -> float:
        return self.protector.eps

    @property
    def classifier(self) -> nn.Module | None:
        return self.protector.classifier

    @property
    def enhancer(self) -> nn.Module | None:
        return self.protector.enhancer

    def __setattr__(self, name: str, value: object) -> None:
        # nn.Module would register an enhancer module as this module's own, under the property.
        if name == "enhancer":
            self.protector.enhancer = value
        else:
            super().__setattr__(name, value)

    @property
    def guided(self) -> bool:
        return self.protector.guided

    def attach_classifier(self, classifier: nn.Module | None) -> None:
        self.protector.attach_classifier(classifier)

    def needs_tiling(self, height: int, width: int) -> bool:
        return height * width > self.max_pixels

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The photo the protector's budget is measured from, on the whole photo."""
        return self.protector.reference(x).float()

    def scene_label(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor | None:
        """The protector's :meth:`~protector.generator.BoundedProtector.scene_label` of the whole photo."""
        return self.protector.scene_label(x, logits)

    def perturb(self, reference: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The protected photo around an already computed ``reference(x)``, tiled if large;
        every tile's guide moves away from the same ``label`` (:meth:`scene_label`)."""
        return self._whole_or_tiled(functools.partial(self.protector.perturb, label=label), reference)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.perturb(self.reference(x), self.scene_label(x))

    def _whole_or_tiled(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if not self.needs_tiling(*x.shape[-2:]):
            return fn(x).float()
        return tiled_apply(fn, x, self.tile, self.overlap, self.align)
