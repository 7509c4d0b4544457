"""How protected files are made: the one record of every setting that changes their bytes.

`protect` builds a :class:`ProtectionSettings` from its flags, checks it once (here), runs
with it, and writes :meth:`~ProtectionSettings.to_record` into the output folder's
``protect-run.json``; a rerun compares records to decide whether it may resume, and
`evaluate` reads it back with :meth:`~ProtectionSettings.from_record` (the budget its
baselines attack with, the quality they are saved at, the edit strength). Standard library
only: a leaf module every other one may import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

OUTPUT_FORMATS = ("jpeg", "png", "webp", "same")
REFINE_LOSSES = ("topk", "sensitive_safe", "margin", "ce", "relativistic")
VIEW_SET_NAMES = ("as-is", "shared", "classifiers")
# What the steps descend unless told: over views, cross-entropy (unbounded, it keeps pushing
# where a margin stops, and the margin won under one view is lost under the next: measured in
# BENCHMARKS.md, "Views"); for the file as it is, the top-5 margin of the shipped configs.
DEFAULT_REFINE_LOSS = {"shared": "ce", "classifiers": "ce", "as-is": "topk"}
# Extra steps for the photos a view still recognizes after the refine steps, unless told: over
# the classifier inputs they took every listed view to 95-100% fooled on held-out photos (the file
# as it is from 90%), for about a third more time on average (BENCHMARKS.md, "Views"); not
# measured for the other view sets.
DEFAULT_EXTRA_STEPS = {"shared": 0, "classifiers": 10, "as-is": 0}
# Photos whose shorter side is larger are protected on a copy this size: the file as it is of
# photos up to about 1.4 MP is then a view their steps take (20% -> 85% fooled on held-out
# photos, BENCHMARKS.md "Views"), at the cost of a pass at that size.
WORKING_SIDE = 1024


def check_quality(quality: int, what: str = "quality") -> int:
    """The one range rule of a JPEG/WebP quality: an integer in 1..100."""
    if isinstance(quality, bool) or int(quality) != quality or not 1 <= quality <= 100:
        raise ValueError(f"{what} must be in 1..100 (an integer), got {quality}")
    return int(quality)


@dataclass(frozen=True)
class ProtectionSettings:
    """Everything besides the protector and the attack model that changes a protected file's bytes.

    Batch size, workers and devices are not here: a resumed run writes the same bytes with
    any batching (RELIABILITY.md, section 2).

    Args:
        fmt: output format (``jpeg``, ``png``, ``webp``, ``same``).
        quality: JPEG/WebP quality, 1..100; also the JPEG inside the gradient steps.
        eps: L-inf budget, a fraction of [0, 1], of a protector built here (no protector
            file); None: the protector file's own budget.
        views: the views protection is computed for (``protector.views.VIEW_SETS``):
            ``shared`` (the file resized, cropped, re-encoded by a platform, and as it is),
            ``classifiers`` (the common classifier inputs in turn) or ``as-is`` (the file
            exactly as written: the MediaEval protocol).
        views_per_step: views per gradient step under ``shared`` or ``classifiers``.
        working_side: under ``shared`` or ``classifiers``, photos whose shorter side is larger
            are protected on a copy scaled down to this shorter side and the perturbation is
            carried back to full size (the copy's steps leave the file as it is out); None:
            always at full size.
        full_size_steps: under views, gradient steps of eps/4 for the file classified as it is,
            at full size, after the views' steps (and after carrying the perturbation back from
            the working copy); photos up to ``tiling``'s max pixels. Off by default: with a 512
            px working copy they cost the resized views 15-20 points of what they gained for
            the file as it is (BENCHMARKS.md, "Views").
        refine_steps: white-box gradient steps after the generator.
        extra_steps: up to this many more for the photos the attack model still recognizes under
            a view of those steps (``protector.refine.refine``); default
            :data:`DEFAULT_EXTRA_STEPS` of the views; none without refine steps.
        refine_loss: what they descend (``protector.losses.attack_loss_by_name``); default
            :data:`DEFAULT_REFINE_LOSS` of the views.
        senscats_sha256: sha256 of the sensitive-category file ``sensitive_safe`` keeps out
            (None with any other loss: the file then changes nothing).
        edit_strength: blend of an appeal protector's trained edit with the photo, in (0, 1];
            None: no edit (a protector without one, or ``--enhance off``). The one spelling
            of "no edit".
        tiling: (max_pixels, tile, overlap, align) of :class:`~protector.protect.tiling.TiledProtector`.
        precision: the Trainer precision (bf16 and float32 differ in the bytes).
    """

    fmt: str = "jpeg"
    quality: int = 90
    eps: float | None = None
    views: str = "classifiers"
    views_per_step: int = 2
    working_side: int | None = WORKING_SIDE
    full_size_steps: int = 0
    refine_steps: int = 0
    extra_steps: int | None = None
    refine_loss: str = ""
    senscats_sha256: str | None = None
    edit_strength: float | None = None
    tiling: tuple[int, int, int, int] = (4 * 1024 * 1024, 1024, 128, 64)
    precision: str = "32-true"

    def __post_init__(self) -> None:
        if not self.refine_loss and self.views in VIEW_SET_NAMES:
            object.__setattr__(self, "refine_loss", DEFAULT_REFINE_LOSS[self.views])
        if self.extra_steps is None and self.views in VIEW_SET_NAMES:
            object.__setattr__(self, "extra_steps", DEFAULT_EXTRA_STEPS[self.views])
        if self.fmt not in OUTPUT_FORMATS:
            raise ValueError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.fmt!r}")
        check_quality(self.quality, "--quality")
        if self.eps is not None and not 0.0 < self.eps <= 1.0:
            raise ValueError(f"--eps must be in (0, 1] (a fraction of the pixel range, e.g. 2/255), got {self.eps}")
        if self.views not in VIEW_SET_NAMES:
            raise ValueError(f"--views must be one of {', '.join(VIEW_SET_NAMES)}, got {self.views!r}")
        if self.views_per_step < 1:
            raise ValueError(f"--views-per-step must be at least 1, got {self.views_per_step}")
        if self.working_side is not None and self.working_side < 32:
            raise ValueError(f"--working-side must be at least 32 pixels, got {self.working_side}")
        if self.full_size_steps < 0:
            raise ValueError(f"--full-size-steps must be >= 0, got {self.full_size_steps}")
        if self.refine_steps < 0:
            raise ValueError(f"--refine-steps must be >= 0, got {self.refine_steps}")
        if self.extra_steps is not None and self.extra_steps < 0:
            raise ValueError(f"--extra-steps must be >= 0, got {self.extra_steps}")
        if self.refine_loss not in REFINE_LOSSES:
            raise ValueError(f"--refine-loss must be one of {', '.join(REFINE_LOSSES)}, got {self.refine_loss!r}")
        if self.refine_loss == "sensitive_safe" and self.senscats_sha256 is None:
            raise ValueError("--refine-loss sensitive_safe needs the sensitive categories: pass --senscats "
                             "MEPP18senscats.txt")
        if self.edit_strength is not None and not 0.0 < self.edit_strength <= 1.0:
            raise ValueError(f"--enhance-strength must be in (0, 1] (--enhance off for no edit), got {self.edit_strength}")
        max_pixels, tile, overlap, align = self.tiling
        if min(max_pixels, tile, align) < 1 or not 0 <= overlap < tile:
            raise ValueError(f"tiling needs max pixels, tile and align >= 1 and 0 <= overlap < tile, got {self.tiling}")
        if not self.refine_steps:  # extra steps continue the refine steps: none without them
            object.__setattr__(self, "extra_steps", 0)

    @property
    def view_robust(self) -> bool:
        return self.views != "as-is"

    def to_record(self) -> dict[str, Any]:
        """Plain JSON values, for ``protect-run.json``."""
        record = asdict(self)
        record["tiling"] = list(self.tiling)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ProtectionSettings:
        """The settings a ``protect-run.json`` recorded; keys this version does not know are ignored,
        and keys an older version did not write take their defaults of that version's behaviour."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        if "views" not in record:  # written before views existed: the file as it is
            values.update(views="as-is", working_side=None)
        values.setdefault("full_size_steps", 0)  # written before full-size steps existed
        values.setdefault("extra_steps", 0)  # written before extra steps existed
        if "format" in record and "fmt" not in record:  # the older spelling
            values["fmt"] = record["format"]
        if "enhance_strength" in record and "edit_strength" not in record:
            strength = record["enhance_strength"]
            values["edit_strength"] = strength if strength else None
        if values.get("refine_loss") is None:  # older records: None when there were no refine steps
            values["refine_loss"] = "topk"
        if values["refine_loss"] == "sensitive_safe" and not values.get("senscats_sha256"):
            values["senscats_sha256"] = "not recorded"  # older records named the loss, not the file
        if "tiling" in values:
            values["tiling"] = tuple(values["tiling"])
        return cls(**values)
