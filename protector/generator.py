"""The perturbation generator (a small U-Net) and the L-inf budget it is held to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from protector.guidance import gradient_and_label, predicted_label
from protector.settings import check_quality

Norm = Literal["batch", "instance", "none"]
Bound = Literal["tanh", "clamp"]


def _norm_layer(kind: Norm, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


def _conv_block(cin: int, cout: int, norm: Norm, stride: int = 1) -> nn.Sequential:
    # The conv bias is redundant before a normalization layer that re-centres.
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=norm == "none"),
        _norm_layer(norm, cout),
        nn.LeakyReLU(0.2, inplace=True),
    )


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, norm: Norm) -> None:
        super().__init__()
        self.reduce = _conv_block(cin, cout, norm, stride=2)
        self.refine = _conv_block(cout, cout, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.reduce(x))


class _Up(nn.Module):
    # Project with a cheap 1x1 at the coarse level, upsample, then *add* the skip (LinkNet
    # style): concatenating at fine levels would triple the cost of the full-size convs.
    def __init__(self, cin: int, cout: int, norm: Norm) -> None:
        super().__init__()
        self.project = nn.Conv2d(cin, cout, 1)
        self.fuse = _conv_block(cout, cout, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.project(x), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(x + skip)


class UNetGenerator(nn.Module):
    r"""Small U-Net mapping a photo to a raw perturbation map.

    Built for fast CPU inference: the full-resolution level has only ``base_channels // 4``
    channels, most of the work happens after an early stride-2 downsampling, and the
    decoder adds skips instead of concatenating them.
    Any input size works: the input is padded (reflect) to a multiple of ``2**depth`` and
    the output cropped back. The output is unbounded; :func:`apply_budget` turns it into a
    bounded perturbation.

    Args:
        in_channels: channels of the input and of the output map. Default: 3.
        base_channels: channels after the first downsampling; doubles at each level.
            Default: 32.
        depth: number of stride-2 levels (1..6). Default: 3.
        norm: ``"batch"``, ``"instance"`` or ``"none"``. Default: ``"batch"``.
        guided: also take a guide map (the attack model's normalized gradient,
            :func:`protector.guidance.attack_gradient`) as input; the output is the guide
            times a learned gain plus the network's correction, which starts near zero, so an
            untrained guided generator already behaves like a soft FGSM. Default: False.
        queries: attack-model gradients a guided generator asks for (1 or 2). With 2 it
            is a learned two-step optimizer: it runs once on the clean photo's guide, then
            again seeing also the gradient at its own first output, the second one's output
            starting at the first one's plus a learned gain times the new gradient (an
            untrained one behaves like a soft two-step PGD). Default: 1.
        guide_jpeg_quality: take every guide through a differentiable JPEG at this quality,
            i.e. the gradient of the classifier as it will see the saved file; None: the
            plain gradient; ignored by a generator that is not guided. Default: None.
        guide_shorter_sides: take the guide over views: the photo with its shorter side
            resized to each of these sizes (:func:`protector.guidance.gradient_and_label`),
            for a protector meant to survive a classifier's resize; () or None: the photo as
            it is. Only for a one-query guided generator. Default: None.
        bound: how the raw map becomes a perturbation within the budget
            (:func:`apply_budget`): ``"tanh"`` (``eps * tanh(raw)``, smooth) or ``"clamp"``
            (``eps * clamp(raw, -1, 1)``, the projection of CDA/BIA: the whole budget is
            reached at a finite output, and used wherever ``|raw| >= 1``). Default: ``"tanh"``.

    Shape:
        - Input: :math:`(B, C, H, W)`, RGB in [0, 1]; guide (when ``guided``): the same
          shape, in [-1, 1].
        - Output: :math:`(B, C, H, W)`, raw map (before the bound of :func:`apply_budget`).

    Example::
        >>> g = UNetGenerator(base_channels=16, depth=2)
        >>> g(torch.rand(1, 3, 37, 50)).shape
        torch.Size([1, 3, 37, 50])
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        depth: int = 3,
        norm: Norm = "batch",
        guided: bool = False,
        queries: int = 1,
        guide_jpeg_quality: int | None = None,
        guide_shorter_sides: Sequence[int] | None = None,
        bound: Bound = "tanh",
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if base_channels < 2:
            raise ValueError(f"base_channels must be >= 2, got {base_channels}")
        if not 1 <= depth <= 6:
            raise ValueError(f"depth must be in 1..6, got {depth}")
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        if queries not in (1, 2) or (queries == 2 and not guided):
            raise ValueError(f"queries must be 1, or 2 for a guided generator; got {queries} (guided={guided})")
        if guide_jpeg_quality is not None:
            check_quality(guide_jpeg_quality, "guide_jpeg_quality (or None)")
        if bound not in ("tanh", "clamp"):
            raise ValueError(f"bound must be 'tanh' or 'clamp', got {bound!r}")
        guide_shorter_sides = tuple(int(side) for side in guide_shorter_sides or ())
        if guide_shorter_sides and (not guided or queries != 1):
            raise ValueError("guide_shorter_sides needs a guided generator with queries=1")
        if any(side < 8 for side in guide_shorter_sides):
            raise ValueError(f"guide_shorter_sides must be sizes of at least 8 pixels, got {guide_shorter_sides}")
        # Everything needed to rebuild this network (see protector.export).
        self.config = {
            "in_channels": in_channels, "base_channels": base_channels, "depth": depth, "norm": norm, "guided": guided
        }
        if not guided:
            guide_jpeg_quality = None  # a pure generator takes no guide (one config serves both kinds)
        if queries != 1 or guide_jpeg_quality is not None:  # files of one-query generators stay as they were
            self.config.update(queries=queries, guide_jpeg_quality=guide_jpeg_quality)
        if guide_shorter_sides:
            self.config["guide_shorter_sides"] = list(guide_shorter_sides)
        if bound != "tanh":
            self.config["bound"] = bound
        self.bound = bound
        self.depth = depth
        self.guided = bool(guided)
        self.queries = queries if guided else 0
        self.guide_jpeg_quality = guide_jpeg_quality
        self.guide_shorter_sides = guide_shorter_sides

        widths = [max(base_channels // 4, 4)] + [base_channels * 2**i for i in range(depth)]
        self.stem = _conv_block(in_channels * (1 + self.queries), widths[0], norm)
        self.downs = nn.ModuleList(_Down(widths[i], widths[i + 1], norm) for i in range(depth))
        self.ups = nn.ModuleList(_Up(widths[i + 1], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], in_channels, 3, padding=1)
        if guided:
            # tanh(9 * guide) uses the whole budget wherever the gradient exceeds a third of
            # its standard deviation: FGSM's sign, softened where the gradient is tiny.
            self.guide_gain = nn.Parameter(torch.tensor(9.0))
            if queries == 2:
                # The second step starts smaller: the first has already used most of the budget.
                self.second_gain = nn.Parameter(torch.tensor(4.0))
            # The network's correction starts near zero (not at zero: the layers below the
            # head would get no gradient in the first step).
            with torch.no_grad():
                self.head.weight.mul_(0.01)
                self.head.bias.zero_()

    def forward(
        self, x: torch.Tensor, guide: torch.Tensor | None = None, second_guide: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Raw map for ``x``; a guided generator takes its guide, a two-query one may add the second.

        A two-query generator's first pass gets ``second_guide=None`` (zeros go in).
        """
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        if self.guided != (guide is not None):
            raise ValueError(
                "this generator is guided: pass guide=attack_gradient(classifier, x)"
                if self.guided
                else "this generator takes no guide"
            )
        if second_guide is not None and self.queries != 2:
            raise ValueError("only a generator with queries=2 takes a second guide")
        for name, g in (("guide", guide), ("second_guide", second_guide)):
            if g is not None and g.shape != x.shape:
                raise ValueError(f"{name} must have the shape of x {tuple(x.shape)}, got {tuple(g.shape)}")
        height, width = x.shape[-2:]
        inputs = x * 2 - 1  # centred
        if guide is not None:
            guides = [guide]
            if self.queries == 2:
                guides.append(torch.zeros_like(guide) if second_guide is None else second_guide)
            inputs = torch.cat([inputs, *(g.to(inputs.dtype) for g in guides)], dim=1)
        h = self.stem(_pad_to_multiple(inputs, 2**self.depth))
        skips = [h]
        for down in self.downs:
            h = down(h)
            skips.append(h)
        skips.pop()
        for up in self.ups:
            h = up(h, skips.pop())
        raw = self.head(h)[..., :height, :width]
        if guide is None:
            return raw
        raw = raw + self.guide_gain * guide
        return raw if second_guide is None else raw + self.second_gain * second_guide


class NoGenerator(nn.Module):
    r"""The generator of a protector made without a trained file: no learned perturbation.

    Its raw map is zero, so the protected photo starts as the photo itself and all of the
    protection comes from the gradient steps after it (``protect --refine-steps``: EOT-PGD
    over views). A trained generator instead starts those steps where it ends.
    """

    guided = False
    config: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


DEFAULT_EPS = 2 / 255


def default_protector(eps: float | None = None) -> BoundedProtector:
    """The protector of ``protect`` without a trained file: :class:`NoGenerator` within ``eps``
    (default 2/255, two 8-bit levels), protecting with gradient steps alone."""
    return BoundedProtector(NoGenerator(), DEFAULT_EPS if eps is None else eps)


@dataclass(frozen=True)
class GeneratorKind:
    """What protecting asks of a generator: whether it takes a guide, how many, through what
    JPEG, and its bound (:class:`UNetGenerator` documents each)."""

    guided: bool = False
    queries: int = 0
    guide_jpeg_quality: int | None = None
    guide_shorter_sides: tuple[int, ...] = ()
    bound: Bound = "tanh"

    @classmethod
    def of(cls, generator: nn.Module) -> GeneratorKind:
        """The kind of ``generator``. Any network mapping a photo to a raw map may be a generator
        (``model.generator`` takes a class path): one without these attributes is a pure,
        tanh-bounded one. The one place a generator is asked for them."""
        guided = bool(getattr(generator, "guided", False))
        return cls(guided=guided, queries=getattr(generator, "queries", 0) if guided else 0,
                   guide_jpeg_quality=getattr(generator, "guide_jpeg_quality", None),
                   guide_shorter_sides=tuple(getattr(generator, "guide_shorter_sides", ())),
                   bound=getattr(generator, "bound", "tanh"))


def protect_batch(
    generator: nn.Module, x: torch.Tensor, eps: float, classifier: nn.Module | None, label: torch.Tensor | None = None
) -> torch.Tensor:
    """The protected photos: the generator's raw map, fed its guides, through the budget.

    A guided generator gets the classifier's gradient at ``x`` for ``label`` (default: the
    prediction on ``x``); a two-query one then runs again, also seeing the gradient at its
    own first output for the same label.
    """
    kind = GeneratorKind.of(generator)
    if kind.queries == 0:
        return apply_budget(x, generator(x), eps, kind.bound)
    require_classifier(generator, classifier)
    quality = kind.guide_jpeg_quality
    guide, label = gradient_and_label(classifier, x, label, jpeg_quality=quality,
                                      shorter_sides=kind.guide_shorter_sides)
    x_adv = apply_budget(x, generator(x, guide), eps, kind.bound)
    if kind.queries == 2:
        second, _ = gradient_and_label(classifier, x_adv, label, jpeg_quality=quality)
        x_adv = apply_budget(x, generator(x, guide, second), eps, kind.bound)
    return x_adv


def require_classifier(generator: nn.Module, classifier: nn.Module | None) -> None:
    """Refuse a gradient-guided generator without the attack model its guide comes from."""
    if GeneratorKind.of(generator).guided and classifier is None:
        raise ValueError(
            "this protector is gradient-guided (trained with generator guided: true): it needs the attack model "
            "it was trained against; pass --classifier (e.g. --classifier resnet50)"
        )


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    height, width = x.shape[-2:]
    # Instance norm needs more than one value per channel at the coarsest level.
    pad_h = max(math.ceil(height / multiple), 2) * multiple - height
    pad_w = max(math.ceil(width / multiple), 2) * multiple - width
    if pad_h == 0 and pad_w == 0:
        return x
    # Reflect keeps image statistics at the border; it needs the pad to be smaller than the
    # image, so tiny inputs fall back to replicate.
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def apply_budget(x: torch.Tensor, raw: torch.Tensor, eps: float, bound: Bound = "tanh") -> torch.Tensor:
    r"""Bound a raw generator map to the L-inf ball around ``x``: ``clamp(x + eps * squash(raw), 0, 1)``.

    Together with :func:`project_to_budget` this is the one home of the budget rule
    ``|x_adv - reference| <= eps``; ``x`` is the protector's reference photo
    (:meth:`BoundedProtector.reference`).

    ``squash`` is ``tanh`` or, for ``bound="clamp"``, ``clamp(., -1, 1)``. Computed in
    float32 even under bf16/fp16 autocast (8/255 in bf16 rounds above 8/255), so
    ``|x_adv - x| <= eps`` holds up to float32 rounding.

    Args:
        x: clean images in [0, 1].
        raw: raw generator output, same shape as ``x``.
        eps: budget as a fraction of the [0, 1] range (2/255 is two 8-bit levels).
        bound: ``"tanh"`` or ``"clamp"`` (see :class:`UNetGenerator`). Default: ``"tanh"``.

    Shape:
        - x, raw: :math:`(B, C, H, W)`; output: the same, float32.
    """
    if x.shape != raw.shape:
        raise ValueError(f"x and raw must have the same shape, got {tuple(x.shape)} and {tuple(raw.shape)}")
    with torch.autocast(device_type=x.device.type, enabled=False):
        raw = raw.float()
        squashed = torch.tanh(raw) if bound == "tanh" else raw.clamp(-1.0, 1.0)
        return (x.float() + eps * squashed).clamp(0.0, 1.0)


def project_to_budget(x_adv: torch.Tensor, reference: torch.Tensor, eps: float) -> torch.Tensor:
    """The nearest point of the L-inf ball of radius ``eps`` around ``reference``, within [0, 1].

    Shape: x_adv, reference: (B, C, H, W); output: the same, in x_adv's dtype.
    """
    return torch.minimum(torch.maximum(x_adv, reference - eps), reference + eps).clamp(0.0, 1.0)


def check_eps(eps: float) -> float:
    """Return ``eps`` as a float, or raise ValueError unless 0 < eps <= 1."""
    eps = float(eps)
    if not 0.0 < eps <= 1.0:
        raise ValueError(f"eps must be in (0, 1] (a fraction of the [0, 1] pixel range, e.g. 2/255), got {eps}")
    return eps


class BoundedProtector(nn.Module):
    r"""Generator plus budget: the one owner of "protect a photo"; a
    :class:`~protector.protector_protocol.Protector`.

    Contract: ``|forward(x) - reference(x)| <= eps`` elementwise, output in [0, 1], float32.
    ``reference(x)`` is the photo the budget is measured from: the photo the user publishes,
    i.e. the input, or the enhanced input when the protector has an ``enhancer`` (an appeal
    stage, :class:`protector.enhance.ToneCurveEnhancer`). Everything that enforces or
    measures the budget (refinement, tiling, the writer's delta, training metrics) asks this
    object for it.

    Args:
        generator: network returning a raw map the shape of its input.
        eps: L-inf budget as a fraction of the [0, 1] range, 0 < eps <= 1.
        classifier: the attack model, needed (only) by a guided generator, which is fed its
            gradient (:mod:`protector.guidance`). Can be attached later
            (:meth:`attach_classifier`).
        enhancer: optional image-to-image edit applied before the perturbation; its output is
            the reference. None: the reference is the input.

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1]; Output: the same.

    Example::
        >>> protector = BoundedProtector(UNetGenerator(base_channels=8, depth=2), eps=2 / 255).eval()
        >>> x = torch.rand(1, 3, 64, 64)
        >>> bool(((protector(x) - protector.reference(x)).abs() <= 2 / 255 + 1e-6).all())
        True
    """

    def __init__(
        self,
        generator: nn.Module,
        eps: float,
        classifier: nn.Module | None = None,
        enhancer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.eps = check_eps(eps)
        self.classifier = classifier
        self.enhancer = enhancer

    @property
    def guided(self) -> bool:
        return GeneratorKind.of(self.generator).guided

    def attach_classifier(self, classifier: nn.Module | None) -> None:
        """Give a guided protector its attack model (kept if one is attached); refuse without one."""
        if self.classifier is None:
            require_classifier(self.generator, classifier)
            if self.guided:
                self.classifier = classifier

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The photo the budget is measured from: the enhanced input, or the input itself."""
        return x if self.enhancer is None else self.enhancer(x)

    def scene_label(self, x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor | None:
        """What a guided appeal protector's guide moves away from: the attack model's prediction
        on the unedited photo ``x`` (the scene to hide), (B,). None when the reference's own
        prediction is that label (no enhancer) or there is no guide. ``logits``: the attack
        model's float32 logits of ``x`` if already computed (``protect``'s clean pass for the
        manifest), reused unless the guide sees the photo through JPEG."""
        if self.enhancer is None or not self.guided:
            return None
        require_classifier(self.generator, self.classifier)
        quality = GeneratorKind.of(self.generator).guide_jpeg_quality
        if logits is not None and quality is None:
            return logits.argmax(dim=1)
        return predicted_label(self.classifier, x, jpeg_quality=quality)

    def perturb(self, reference: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
        """The protected photo for an already computed ``reference(x)`` (e.g. a window of it);
        ``label``: :meth:`scene_label` of ``x`` (None: the prediction on the reference). An edit
        can change the prediction (38% of the stand-in's benchmark photos): a guide for the
        edited photo's class would push the protected photo back towards the original scene."""
        return protect_batch(self.generator, reference, self.eps, self.classifier, label)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.perturb(self.reference(x), self.scene_label(x))

    def extra_repr(self) -> str:
        return f"eps={self.eps:.6g} ({self.eps * 255:.3g}/255)"
