"""Per-photo appeal refinement at protect time: a few optimizer steps on one photo's edit.

The trained enhancer (:class:`protector.enhance.ToneCurveEnhancer`) predicts one edit from a
64 px thumbnail; on the stand-in it reaches about a fifth of what each photo allows
(BENCHMARKS.md, appeal rounds 2-3). :class:`AppealSteps` starts from that edit and takes
``steps`` Adam steps on *this photo's* edit parameters, maximizing NIMA of the edited photo
as it will be published (through a differentiable JPEG) under the naturalness terms of
:class:`~protector.losses.NimaAppeal` (no colour cast, the edit's size charged against the
original photo). The bounded perturbation is then measured around the result: wrapped
around an enhancer, it *is* the protector's enhancer, so :meth:`BoundedProtector.reference`,
refinement, tiling and the writer's delta all see the final edit.

The steps run on the photo, or for a photo larger than ``work_size`` on its short side on a
copy of that size, and the edit found is applied at full size, so a 12 MP photo costs the
same steps plus per-pixel work. Every family is resolution-independent: a monotone tone curve
(shared, each channel within ``colour_shift`` of it), a global saturation factor, a coarse
``grid`` x ``grid`` map of exposure gains (a smooth dodge-and-burn, bilinearly interpolated
over the photo), and a detail boost (unsharp mask) whose radius is a fraction of the photo's
short side. Each is bounded through ``tanh`` or a convex blend with the identity, however far
the optimizer pushes, and all parameters zero is exactly the trained edit; ``steps`` 0 never
optimizes and returns the trained edit itself.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import nn

from protector.enhance import apply_curves, apply_saturation, curve_from_logits

__all__ = ["DEFAULT_STEPS", "AppealSteps", "StepEdit", "apply_detail", "apply_exposure_grid", "describe",
           "resolve_steps", "with_appeal_steps"]


class StepEdit(NamedTuple):
    """One photo's per-photo edit on top of the trained one, bounded, for a batch of one or more.

    curves (B, 3, knots + 1) monotone tone curves; saturation (B,) factors; exposure (B, 1, g, g)
    gains in stops; detail (B,) unsharp-mask amounts.
    """

    curves: torch.Tensor
    saturation: torch.Tensor
    exposure: torch.Tensor
    detail: torch.Tensor


def apply_exposure_grid(x: torch.Tensor, stops: torch.Tensor) -> torch.Tensor:
    """Multiply each pixel by 2 ** (a coarse grid of stops, bilinearly interpolated to the photo).

    The grid's corners sit on the photo's corners (``align_corners``), so the map is the same
    smooth surface at any resolution. Shape: x (B, 3, H, W), stops (B, 1, g, g) -> (B, 3, H, W).
    """
    gain = torch.exp2(F.interpolate(stops, size=x.shape[-2:], mode="bilinear", align_corners=True))
    return (x * gain).clamp(0.0, 1.0)


def apply_detail(x: torch.Tensor, amount: torch.Tensor, radius: float) -> torch.Tensor:
    """Unsharp mask whose blur is ``radius`` times the photo's short side (resolution-independent).

    Large photos are blurred on a copy at most 4x the blur's own scale and upsampled, which is
    what a Gaussian of that radius keeps anyway. Shape: x (B, 3, H, W), amount (B,) -> the same.
    """
    height, width = x.shape[-2:]
    sigma = max(radius * min(height, width), 0.3)
    factor = max(1, int(sigma // 2))  # keep the blur at about 2 px on the reduced copy
    small = F.avg_pool2d(x, factor, ceil_mode=True) if factor > 1 else x
    s = sigma / factor
    kernel = 2 * int(math.ceil(2 * s)) + 1
    blurred = gaussian_blur2d(small, (kernel, kernel), (s, s), border_type="replicate")
    if factor > 1:
        blurred = F.interpolate(blurred, size=(height, width), mode="bilinear", align_corners=False)
    return (x + amount.view(-1, 1, 1, 1) * (x - blurred)).clamp(0.0, 1.0)


class AppealSteps(nn.Module):
    r"""The trained edit, refined per photo by ``steps`` Adam steps against an appeal objective.

    Wraps an enhancer (any module photo -> edited photo, e.g. a ``ToneCurveEnhancer``) and
    behaves as one: ``forward(x)`` returns the edited photo, 8-bit, in [0, 1]. The per-photo
    edit is applied on top of the enhancer's output; its parameters start at zero (the
    trained edit) and stay bounded: no level moves more than ``max_shift`` (+ ``colour_shift``
    per channel) under the curve, saturation within ``1 +- saturation``, exposure within
    ``+- exposure`` stops, detail within ``+- detail``. Photos are refined one at a time, so
    the result does not depend on how photos were batched.

    Args:
        enhancer: the trained edit (its output is where the steps start).
        appeal: objective ``(edited, photo) -> (loss, scores)``, e.g. a
            :class:`~protector.losses.NimaAppeal` with ``jpeg_quality`` 90 and ``edit_weight``;
            ``photo`` is the unedited photo, so the edit is charged from the original.
        steps: Adam steps per photo; 0 returns the enhancer's edit unchanged. Default: 20.
        lr: Adam's rate on the unconstrained parameters. Default: 0.1.
        work_size: larger photos are optimized on a copy with this short side. Default: 256.
        knots: segments of the tone curve. Default: 16.
        max_shift: the most the shared tone curve moves any level, in (0, 1]. Default: 0.1.
        colour_shift: the most each channel's curve moves apart from the shared one. Default: 0.02.
        saturation: saturation factor range ``1 +- saturation``, in [0, 1); 0: off. Default: 0.3.
        grid: side of the exposure grid (0: off). Default: 0.
        exposure: the most the exposure grid lifts or lowers, in stops. Default: 0.3.
        detail: the most the unsharp mask adds or removes (0: off). Default: 0.
        detail_radius: the mask's blur, as a fraction of the photo's short side. Default: 1/256 (1 px at 256 px).

    Shape:
        - Input: :math:`(B, 3, H, W)` in [0, 1], any size; output: the same, float32, 8-bit levels.

    Example::
        >>> steps = AppealSteps(nn.Identity(), lambda e, p: (-e.mean(), e.mean()), steps=0)
        >>> x = torch.randint(0, 256, (1, 3, 20, 30)) / 255
        >>> torch.equal(steps(x), x)
        True
    """

    def __init__(
        self,
        enhancer: nn.Module,
        appeal: nn.Module,
        steps: int = 20,
        lr: float = 0.1,
        work_size: int = 256,
        knots: int = 16,
        max_shift: float = 0.1,
        colour_shift: float = 0.02,
        saturation: float = 0.3,
        grid: int = 0,
        exposure: float = 0.3,
        detail: float = 0.0,
        detail_radius: float = 1.0 / 256,
    ) -> None:
        super().__init__()
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if work_size < 32:
            raise ValueError(f"work_size must be >= 32 pixels, got {work_size}")
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        if not (0.0 < max_shift <= 1.0 and colour_shift >= 0.0 and max_shift + colour_shift <= 1.0):
            raise ValueError(f"need 0 < max_shift <= 1, colour_shift >= 0, max_shift + colour_shift <= 1; "
                             f"got {max_shift}, {colour_shift}")
        if not 0.0 <= saturation < 1.0:
            raise ValueError(f"saturation must be in [0, 1), got {saturation}")
        if grid < 0 or exposure < 0 or detail < 0 or detail_radius <= 0:
            raise ValueError(f"grid, exposure and detail must be >= 0 and detail_radius > 0, got {grid}, "
                             f"{exposure}, {detail}, {detail_radius}")
        self.enhancer = enhancer
        self.appeal = appeal
        self.steps = int(steps)
        self.lr = float(lr)
        self.work_size = int(work_size)
        self.knots = int(knots)
        self.max_shift = float(max_shift)
        self.colour_shift = float(colour_shift)
        self.saturation = float(saturation)
        self.grid = int(grid)
        self.exposure = float(exposure)
        self.detail = float(detail)
        self.detail_radius = float(detail_radius)

    @property
    def settings(self) -> dict[str, float | int]:
        """What changes the edit: recorded with the files a run makes."""
        return {"steps": self.steps, "lr": self.lr, "work_size": self.work_size, "knots": self.knots,
                "max_shift": self.max_shift, "colour_shift": self.colour_shift, "saturation": self.saturation,
                "grid": self.grid, "exposure": self.exposure, "detail": self.detail,
                "detail_radius": self.detail_radius}

    @property
    def strength(self) -> float:
        """The wrapped enhancer's strength (``protect --enhance-strength``)."""
        return float(getattr(self.enhancer, "strength", 1.0))

    # ------------------------------------------------------------------ the edit

    def parameter_count(self) -> int:
        return 4 * self.knots + 1 + self.grid * self.grid + 1

    def bounded(self, params: torch.Tensor) -> StepEdit:
        """The bounded edit of unconstrained parameters (B, :meth:`parameter_count`); zeros: identity."""
        k, g = self.knots, self.grid
        steps = curve_from_logits(params[:, : 4 * k].view(-1, 4, k))
        identity = torch.linspace(0.0, 1.0, k + 1, device=params.device)
        move = self.max_shift * (steps[:, :1] - identity) + self.colour_shift * (steps[:, 1:] - identity)
        curves = identity + move  # (B, 3, k + 1): monotone, a convex blend of monotone curves
        saturation = 1.0 + self.saturation * torch.tanh(params[:, 4 * k])
        exposure = self.exposure * torch.tanh(params[:, 4 * k + 1 : 4 * k + 1 + g * g]).reshape(len(params), 1, g, g)
        detail = self.detail * torch.tanh(params[:, -1])
        return StepEdit(curves, saturation, exposure, detail)

    def apply(self, x: torch.Tensor, edit: StepEdit) -> torch.Tensor:
        """``x`` (the trained edit's output) under the per-photo edit, not rounded."""
        y = apply_curves(x, edit.curves)
        if self.grid:
            y = apply_exposure_grid(y, edit.exposure)
        if self.saturation:
            y = apply_saturation(y, edit.saturation)
        if self.detail:
            y = apply_detail(y, edit.detail, self.detail_radius)
        return y

    def work_copy(self, x: torch.Tensor) -> torch.Tensor:
        """The copy the steps optimize on: the photo itself up to ``work_size`` on its short
        side, else a copy of that short side (aspect kept) with the pixels a nearest resize
        picks, as idealo's NIMA picks them. Both choices measured: a 224 px square copy (even
        nearest) found edits that did not raise NIMA of the saved 256 px JPEG, because JPEG at
        the file's size and JPEG of a smaller copy change NIMA differently."""
        from protector.nima import resize_nearest_like_pil

        height, width = x.shape[-2:]
        if min(height, width) <= self.work_size:
            return x.float()
        scale = self.work_size / min(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return resize_nearest_like_pil(x.float(), *size)

    def fit(self, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """The unconstrained parameters (1, P) that ``steps`` Adam steps find for one photo.

        ``x``: the unedited photo (1, 3, H, W); ``start``: the trained edit of it.
        """
        photo, edited = self.work_copy(x), self.work_copy(start)
        params = torch.zeros(1, self.parameter_count(), device=x.device, requires_grad=True)
        optimizer = torch.optim.Adam([params], lr=self.lr)
        for _ in range(self.steps):
            out = self.apply(edited, self.bounded(params))
            out = out + (torch.round(out * 255) / 255 - out).detach()  # the 8-bit file, straight-through
            loss, _ = self.appeal(out, photo)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return params.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        start = self.enhancer(x).float()
        if self.steps == 0 or self.strength == 0.0:
            return start
        outs = []
        # Protect may run under inference mode (no refinement): the steps need a graph.
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            for i in range(x.shape[0]):
                photo, begin = x[i : i + 1].clone().float(), start[i : i + 1].clone()
                params = self.fit(photo, begin)
                with torch.no_grad():
                    outs.append(torch.round(self.apply(begin, self.bounded(params)) * 255) / 255)
        return torch.cat(outs)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value:g}" for key, value in self.settings.items())


# protect's --appeal-steps when NIMA weights are given: none yet. Measured (BENCHMARKS.md, appeal
# round 4), 20 steps add +0.02 NIMA to the written files for 1.3 s a photo and one photo in 40
# less fooled: not worth it as a default until a richer edit family pays (--appeal-steps 20 asks).
DEFAULT_STEPS = 0
PROTECT_EDIT_WEIGHT = 0.05  # the appeal overlay's edit-size penalty: the edit settles there


def resolve_steps(steps: int | None, has_enhancer: bool, nima: Path | None) -> int:
    """``protect --appeal-steps``: None (auto) is :data:`DEFAULT_STEPS` for a protector with an
    edit when NIMA weights are given, else 0; a number needs both. Raises ValueError otherwise."""
    if steps is None:
        return DEFAULT_STEPS if has_enhancer and nima is not None else 0
    if steps < 0:
        raise ValueError(f"--appeal-steps must be >= 0, got {steps}")
    if steps and not has_enhancer:
        raise ValueError(f"--appeal-steps {steps} refines an appeal protector's edit, and this protector has none "
                         "(or --enhance off): drop --appeal-steps")
    if steps and nima is None:
        raise ValueError(f"--appeal-steps {steps} maximizes NIMA per photo: pass --nima "
                         "weights_mobilenet_aesthetic_0.07.hdf5 (or --appeal-steps 0)")
    return steps


def with_appeal_steps(enhancer: nn.Module, steps: int, nima: Path, jpeg_quality: int | None) -> AppealSteps:
    """``enhancer`` refined per photo by ``steps`` steps against NIMA (idealo preprocessing) of
    the edit as published (``jpeg_quality``; None: a lossless file), as ``protect`` runs it."""
    from protector.losses import NimaAppeal

    appeal = NimaAppeal(str(nima), jpeg_quality=jpeg_quality, edit_weight=PROTECT_EDIT_WEIGHT).eval()
    return AppealSteps(enhancer, appeal, steps=steps).eval()


def describe(enhancer: nn.Module | None) -> dict[str, object] | None:
    """The per-photo steps' settings for a run's record (None: no steps)."""
    if not isinstance(enhancer, AppealSteps) or enhancer.steps == 0:
        return None
    appeal = enhancer.appeal
    objective = {key: getattr(appeal, key, None) for key in ("weight", "colour_weight", "edit_weight", "jpeg_quality")}
    return {**enhancer.settings, "objective": objective}
