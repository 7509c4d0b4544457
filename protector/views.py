"""Views: what happens to a published photo before a classifier looks at it.

Nobody classifies a shared photo at the pixels its owner saved. A sharing platform shrinks
it and re-encodes it; every scene classifier resizes it to its own input (224 to 512 pixels
on the shorter side, often with a centre crop). A perturbation computed for the exact pixels
of the file is gone after a 4x downscale. This module is the one owner of those steps:
protection (``refine``'s expectation over views, training's robustifier) and evaluation
(``evaluate --views``) take their views from here, and nothing else resizes.

A :class:`View` is differentiable (antialiased bilinear resize, the project's differentiable
JPEG, straight-through 8-bit rounding), so a loss can be taken through it. The resize is
torch's antialiased bilinear interpolation, the filter of PIL's ``Image.resize(BILINEAR)``
(what platforms and torchvision classifiers use); ``tests/test_views.py`` checks the match.

Named sets (:data:`VIEW_SETS`): ``as-is`` (the file as written, the MediaEval protocol),
``shared`` (as-is, resized, resized and cropped, uploaded to a platform then resized, at random)
and ``classifiers`` (the common classifier inputs and the file as it is, in turn), the default
of ``protect``. :data:`EVALUATION_VIEWS` is the fixed list ``evaluate --views`` reports.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from protector.robust import differentiable_jpeg, quantize_8bit_ste
from protector.settings import check_quality


@dataclass(frozen=True)
class View:
    """One way a classifier sees a published photo, applied in the order a pipeline does.

    Args:
        name: short label for tables and reports (``short-256``).
        upload_long_side: a platform's resize: the longer side is brought down to this many
            pixels (platforms never enlarge); None: no platform.
        upload_quality: the platform's JPEG re-encode (1..100) after its resize; None: none.
        shorter_side: the classifier's resize: the shorter side becomes this many pixels (up
            or down); None: the photo goes in at its size.
        crop: then a centre square crop of this side; None: the whole photo.

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1]; Output: :math:`(B, 3, H', W')`, float32.

    Example::
        >>> View("short-224-crop", shorter_side=224, crop=224)(torch.rand(1, 3, 300, 400)).shape
        torch.Size([1, 3, 224, 224])
    """

    name: str
    upload_long_side: int | None = None
    upload_quality: int | None = None
    shorter_side: int | None = None
    crop: int | None = None

    def __post_init__(self) -> None:
        for field_name in ("upload_long_side", "shorter_side", "crop"):
            value = getattr(self, field_name)
            if value is not None and value < 8:
                raise ValueError(f"view {self.name!r}: {field_name} must be at least 8 pixels, got {value}")
        if self.upload_quality is not None:
            check_quality(self.upload_quality, f"view {self.name!r}: upload_quality")
        if self.crop is not None and self.shorter_side is not None and self.crop > self.shorter_side:
            raise ValueError(f"view {self.name!r}: crop {self.crop} is larger than the shorter side {self.shorter_side}")

    @property
    def is_identity(self) -> bool:
        return self.upload_long_side is None and self.upload_quality is None and self.shorter_side is None \
            and self.crop is None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if self.upload_long_side is not None:
                height, width = x.shape[-2:]
                if max(height, width) > self.upload_long_side:
                    x = resize(x, scaled_size(height, width, self.upload_long_side / max(height, width)))
            if self.upload_quality is not None:
                x = quantize_8bit_ste(differentiable_jpeg(quantize_8bit_ste(x.clamp(0, 1)), self.upload_quality)
                                      .clamp(0, 1))
            if self.shorter_side is not None:
                height, width = x.shape[-2:]
                x = resize(x, scaled_size(height, width, self.shorter_side / min(height, width)))
            if self.crop is not None:
                x = centre_crop(x, self.crop)
            return x


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) times `scale`, rounded, each at least 1."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize to ``size`` (PIL's BILINEAR filter), differentiable; a no-op at the same size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def centre_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """The centred ``side`` x ``side`` window (the whole extent where the photo is smaller)."""
    height, width = x.shape[-2:]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return x[..., top : top + side, left : left + side]


AS_IS = View("as-is")

#: The inputs of common scene classifiers: the shorter side resized to the sizes networks are
#: trained and served at (224 and 256 for ResNets and the Places365 models, 288..512 for
#: larger-input ones), and the ImageNet/Places365 protocol of 256 then a 224 centre crop.
#: Listed so that neighbours in a cycle are far apart in size.
CLASSIFIER_INPUTS: tuple[View, ...] = (
    View("short-512", shorter_side=512),
    View("short-256", shorter_side=256),
    View("short-384", shorter_side=384),
    View("short-224", shorter_side=224),
    View("short-448", shorter_side=448),
    View("short-256-crop-224", shorter_side=256, crop=224),
    View("short-320", shorter_side=320),
    View("short-288", shorter_side=288),
)

#: What ``evaluate --views`` reports: the file as it is, a classifier's own resizes, and two
#: platform uploads (a phone-size post and a high-resolution one) seen by a 256 px classifier.
EVALUATION_VIEWS: tuple[View, ...] = (
    AS_IS,
    View("short-512", shorter_side=512),
    View("short-384", shorter_side=384),
    View("short-256", shorter_side=256),
    View("short-224", shorter_side=224),
    View("short-256-crop-224", shorter_side=256, crop=224),
    View("upload-1080-q85", upload_long_side=1080, upload_quality=85, shorter_side=256),
    View("upload-2048-q75", upload_long_side=2048, upload_quality=75, shorter_side=256),
)


def view_by_name(name: str) -> View:
    """One of :data:`EVALUATION_VIEWS` by its name."""
    for view in EVALUATION_VIEWS:
        if view.name == name:
            return view
    raise ValueError(f"unknown view {name!r}; known: {', '.join(v.name for v in EVALUATION_VIEWS)}")


@dataclass(frozen=True)
class ViewSampler:
    """Random views for training and for the expectation over views of ``refine``.

    Each draw: with probability ``as_is_prob`` the file as it is; otherwise the shorter side
    resized to a size drawn from ``shorter_sides`` (inclusive), centre-cropped to a square with
    probability ``crop_prob``, after a platform upload (longer side in ``upload_long_sides``,
    JPEG quality in ``upload_qualities``) with probability ``upload_prob``. Draws come from the
    ``torch.Generator`` passed in, so a seeded run is repeatable (a resumed protection writes
    the same bytes).

    Args:
        as_is_prob: probability of the unchanged file. Default: 0.25.
        shorter_sides: range of the classifier's shorter side, pixels. Default: (224, 512).
        crop_prob: probability of the centre crop. Default: 0.3.
        upload_prob: probability of a platform upload first. Default: 0.3.
        upload_long_sides: range of the platform's longer side. Default: (1080, 2048).
        upload_qualities: range of the platform's JPEG quality. Default: (70, 95).
    """

    as_is_prob: float = 0.25
    shorter_sides: tuple[int, int] = (224, 512)
    crop_prob: float = 0.3
    upload_prob: float = 0.3
    upload_long_sides: tuple[int, int] = (1080, 2048)
    upload_qualities: tuple[int, int] = (70, 95)

    def __post_init__(self) -> None:
        for name in ("as_is_prob", "crop_prob", "upload_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {getattr(self, name)}")
        for name, low_bound in (("shorter_sides", 8), ("upload_long_sides", 8), ("upload_qualities", 1)):
            low, high = getattr(self, name)
            if not low_bound <= low <= high:
                raise ValueError(f"{name} must be (low, high) with {low_bound} <= low <= high, got {(low, high)}")
        if self.upload_qualities[1] > 100:
            raise ValueError(f"upload_qualities must stay within 1..100, got {self.upload_qualities}")

    def sample(self, generator: torch.Generator | None = None) -> View:
        def uniform() -> float:
            return float(torch.rand((), generator=generator))

        def integer(bounds: tuple[int, int]) -> int:
            low, high = bounds
            return int(torch.randint(low, high + 1, (), generator=generator))

        if uniform() < self.as_is_prob:
            return AS_IS
        upload = uniform() < self.upload_prob
        long_side, quality = (integer(self.upload_long_sides), integer(self.upload_qualities)) if upload else (None, None)
        side = integer(self.shorter_sides)
        crop = side if uniform() < self.crop_prob else None
        parts = ([f"upload-{long_side}-q{quality}"] if upload else []) + [f"short-{side}"] + (["crop"] if crop else [])
        return View("-".join(parts), long_side, quality, side, crop)

    def draw(self, count: int, generator: torch.Generator | None = None) -> list[View]:
        """``count`` views for one step, stratified: the range of shorter sides is cut into
        ``count`` equal parts, largest first, and view ``i`` draws its side from part ``i``
        (crop and upload as in :meth:`sample`; the file as it is may replace the first). Every step then covers
        the whole range: with independent draws a step can miss the small sizes, whose
        gradients are the weakest, and the perturbation drifts to the large ones."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        low, high = self.shorter_sides
        width = (high - low + 1) / count
        views = []
        for part in range(count):
            top = high - round(part * width)
            bottom = max(low, high - round((part + 1) * width) + 1)
            # The file as it is stands in for the largest part only (a working copy is that size).
            part_sampler = replace(self, shorter_sides=(min(bottom, top), top),
                                   as_is_prob=self.as_is_prob if part == 0 else 0.0)
            views.append(part_sampler.sample(generator))
        return views

    def schedule(self, steps: int, count: int, generator: torch.Generator | None = None) -> list[list[View]]:
        """The views of ``steps`` gradient steps, ``count`` each: :meth:`draw` per step."""
        return [self.draw(count, generator) for _ in range(steps)]

    def for_working_copy(self) -> ViewSampler:
        """The views for a photo protected on a working copy: the same draws (measured so; a
        draw of the file as it is then takes the copy as it is)."""
        return self


@dataclass(frozen=True)
class ViewCycle:
    """Fixed views taken in turn: step ``i`` of a schedule gets the next ``count`` of ``views``.

    Against the stand-in classifier a perturbation won under one resize is largely lost under
    one 10% larger (BENCHMARKS.md, "Views"), and random sizes leave the common classifier
    inputs visited once or twice in ten steps; cycling through them visits each of them every
    few steps at the cost of random draws. Sizes between them are covered less: measured there.

    Args:
        views: the views, in the order they are taken. Default: :data:`CLASSIFIER_INPUTS`.
    """

    views: tuple[View, ...] = CLASSIFIER_INPUTS

    def __post_init__(self) -> None:
        if not self.views:
            raise ValueError("a view cycle needs at least one view")

    def schedule(self, steps: int, count: int, generator: torch.Generator | None = None) -> list[list[View]]:
        """``steps`` lists of ``count`` views, taken from :attr:`views` in turn (``generator`` is unused: no draws)."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return [[self.views[(step * count + i) % len(self.views)] for i in range(count)] for step in range(steps)]

    def for_working_copy(self) -> ViewCycle:
        """The views for a photo protected on a working copy: the file as it is left out (the
        copy as it is is no classifier's input, and at a large copy the costliest pass)."""
        resized = tuple(view for view in self.views if not view.is_identity)
        return replace(self, views=resized) if resized else self


#: The named view sets of ``protect --views``: ``as-is`` protects the file for a classifier
#: that looks at it as it is (the task's protocol); ``shared`` for one that sees it resized,
#: cropped or re-encoded by a platform as well, at random sizes; ``classifiers`` for one that
#: sees it at one of the common classifier inputs, taken in turn (:class:`ViewCycle`).
#: ``classifiers`` takes the file as it is in turn too, for photos protected at their own size
#: (up to the working side): 20% -> 85% fooled as it is on held-out photos, the resized views
#: within one photo of where they were; 90% with the file's JPEG in its loss (BENCHMARKS.md, "Views").
VIEW_SETS: dict[str, ViewSampler | ViewCycle | None] = {"as-is": None, "shared": ViewSampler(),
                                                        "classifiers": ViewCycle(CLASSIFIER_INPUTS + (AS_IS,))}


def working_size(height: int, width: int, max_shorter_side: int) -> tuple[int, int]:
    """The size protection works at: the photo's own, or scaled down so that its shorter side
    is ``max_shorter_side`` when it is larger (every view then sees nearly the whole budget)."""
    shorter = min(height, width)
    if shorter <= max_shorter_side:
        return height, width
    return scaled_size(height, width, max_shorter_side / shorter)


def pixels_at_working_size(pixels: np.ndarray, max_shorter_side: int) -> np.ndarray:
    """A decoded photo, (H, W, 3) uint8, at :func:`working_size` (PIL's BILINEAR, the filter of
    :func:`resize`): what a guided generator trained for the working scale learns from."""
    height, width = pixels.shape[:2]
    size = working_size(height, width, max_shorter_side)
    if size == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def carry_to_full_size(delta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A perturbation computed on a working copy, brought to the photo's ``size`` (bilinear:
    each value is a convex combination of the working copy's, so an L-inf bound carries over)."""
    if tuple(delta.shape[-2:]) == tuple(size):
        return delta
    return F.interpolate(delta, size=size, mode="bilinear", align_corners=False)


def render_view(pixels: np.ndarray, view: View) -> np.ndarray:
    """What a classifier really gets from a decoded file under ``view``: PIL's resizes and a
    real JPEG re-encode (libjpeg, 4:2:0), not the differentiable stand-ins; (H, W, 3) uint8 in and out."""
    image = Image.fromarray(pixels)
    if view.upload_long_side is not None and max(image.size) > view.upload_long_side:
        width, height = image.size
        scale = view.upload_long_side / max(width, height)
        size = scaled_size(height, width, scale)
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    if view.upload_quality is not None:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=view.upload_quality)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    if view.shorter_side is not None:
        width, height = image.size
        size = scaled_size(height, width, view.shorter_side / min(width, height))
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    out = np.asarray(image)
    if view.crop is not None:
        height, width = out.shape[:2]
        top, left = max(0, (height - view.crop) // 2), max(0, (width - view.crop) // 2)
        out = out[top : top + view.crop, left : left + view.crop]
    return np.ascontiguousarray(out)
